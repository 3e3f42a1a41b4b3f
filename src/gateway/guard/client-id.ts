import { headerValues, type HandshakeCheck } from '../handshake.ts';

/**
 * Requires a device to name itself in `X-Client-Id`, equal to the token's `client_id`. This makes a
 * token leaked from one device fail loudly when replayed under another device's identity.
 */
export const clientIdCheck: HandshakeCheck = {
  name: 'client_id',
  run(state) {
    if (state.kind !== 'device') {
      return undefined;
    }

    const values = headerValues(state.request, 'x-client-id');
    if (values.length !== 1 || values[0].trim() !== state.verified?.clientId) {
      return 'client_id_mismatch';
    }
    return undefined;
  },
};
