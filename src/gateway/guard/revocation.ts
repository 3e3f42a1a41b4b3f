import type { Store } from '../../store/database.ts';
import { findBrowserSession } from '../../store/browser-sessions.ts';
import { findDevice } from '../../store/devices.ts';
import { isGrantRevoked } from '../../store/revocations.ts';
import { findUser } from '../../store/users.ts';
import type { HandshakeCheck } from '../handshake.ts';

/**
 * Rejects still-unexpired tokens whose grant was revoked, whose device was removed, or whose
 * browser session ended or user was disabled. It reads the database on every handshake, so a
 * management command in another process takes effect on the next connection.
 */
export function revocationCheck(store: Store): HandshakeCheck {
  return {
    name: 'revocation',
    async run(state) {
      const verified = state.verified;
      if (!verified) {
        return 'token_invalid';
      }

      if (verified.grantId && await isGrantRevoked(store, verified.grantId)) {
        return 'token_revoked';
      }

      if (state.kind === 'device') {
        return await findDevice(store, verified.clientId) ? undefined : 'token_revoked';
      }

      const session = verified.grantId ? await findBrowserSession(store, verified.grantId) : undefined;
      const user = await findUser(store, verified.sub);
      if (!session || !user || user.disabled) {
        return 'token_revoked';
      }
      return undefined;
    },
  };
}
