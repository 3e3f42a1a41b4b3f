import { applicationProtocol, type HandshakeCheck } from '../handshake.ts';

/**
 * Requires browsers to offer `portcullis.v1`. A browser that offered subprotocols fails the
 * connection unless the server selects one of them, and the CSRF offer must never be selected.
 * Devices may offer nothing and get `portcullis.v1` by default.
 */
export const subprotocolCheck: HandshakeCheck = {
  name: 'subprotocol',
  run(state) {
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
