import { boundKeyThumbprint, type DpopVerifier } from '../dpop/verifier.ts';
import { headerValues, type HandshakeCheck } from '../handshake.ts';

/**
 * Ties a DPoP-bound token (RFC 9449) to its key. The token must come with the `DPoP` scheme and one
 * `DPoP` proof header, signed by the key of its `cnf.jkt`, for this handshake and not used before.
 * A bound token sent as a bearer token, or in a cookie, is refused as `token_invalid`: it proves
 * nothing without its key. A token sent with the `DPoP` scheme must be bound.
 */
export function dpopProofCheck(dpop: DpopVerifier): HandshakeCheck {
  return {
    name: 'dpop_proof',
    async run(state) {
      const jkt = boundKeyThumbprint(state.verified!);
      if (state.scheme !== 'dpop') {
        return jkt === undefined ? undefined : 'token_invalid';
      }
      if (!jkt) {
        return 'token_invalid';
      }

      const rejection = await dpop.check(headerValues(state.request, 'dpop'), state.token!, jkt);
      state.detail = rejection?.detail;
      return rejection?.code;
    },
  };
}
