import { csrfTokenMatches } from '../../web/csrf.ts';
import { csrfProtocolPrefix, type HandshakeCheck } from '../handshake.ts';

/**
 * Requires a browser handshake to carry the CSRF token of its own session as a subprotocol offer
 * `portcullis.csrf.<token>`. A page on another origin cannot read the token, and a token stolen
 * from one session is useless with another session's cookie.
 */
export function csrfCheck(csrfKey: string): HandshakeCheck {
  return {
    name: 'csrf',
    run(state) {
      if (state.kind !== 'browser') {
        return undefined;
      }

      const offers = state.offeredProtocols.filter((protocol) => protocol.startsWith(csrfProtocolPrefix));
      if (offers.length !== 1 || !state.verified?.grantId) {
        return 'csrf_invalid';
      }

      const presented = offers[0].slice(csrfProtocolPrefix.length);
      return csrfTokenMatches(csrfKey, state.verified.grantId, presented) ? undefined : 'csrf_invalid';
    },
  };
}
