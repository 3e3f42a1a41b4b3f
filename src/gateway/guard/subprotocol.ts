import { applicationProtocol, type HandshakeCheck } from '../handshake.ts';

const httpTokenPattern = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Requires browsers to offer `portcullis.v1`. A browser that offered subprotocols fails the
 * connection unless the server selects one of them, and the CSRF offer must never be selected.
 * Devices may offer nothing and get `portcullis.v1` by default.
 */
export const subprotocolCheck: HandshakeCheck = {
  name: 'subprotocol',
  run(state) {
    // RFC 6455 section 4.1: each offer is an HTTP token, and ws rejects anything else with a bare 400.
    if (state.offeredProtocols.some((protocol) => !httpTokenPattern.test(protocol))) {
      return 'bad_handshake';
    }

    const offersApplication = state.offeredProtocols.includes(applicationProtocol);
    if (state.kind === 'browser' && !offersApplication) {
      return 'subprotocol_required';
    }
    if (state.kind === 'device' && state.offeredProtocols.length > 0 && !offersApplication) {
      return 'subprotocol_required';
    }
    return undefined;
  },
};
