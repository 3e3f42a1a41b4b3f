import { epochSeconds, type Store } from './database.ts';
import { recordRevocation } from './revocation-events.ts';

/** Seconds a revoked grant stays on the deny-list: the longest allowed access-token lifetime plus leeway. */
const denyListSeconds = 86_400 + 60;

/**
 * Revokes every grant of a user (browser sessions and devices approved through the device flow)
 * and deletes their refresh tokens, so a password change or a disable ends all of them, also after
 * the user is enabled again. Returns the number of grants revoked.
 */
export async function revokeGrantsOfUser(store: Store, username: string, reason: string): Promise<number> {
  const grantIds = new Set<string>();

  const grants = await store.selectFrom('oidc_payloads').select(['id', 'payload']).where('model', '=', 'Grant').execute();
  for (const grant of grants) {
    if ((JSON.parse(grant.payload) as { accountId?: string }).accountId === username) {
      grantIds.add(grant.id);
    }
  }
  const sessions = await store.selectFrom('browser_sessions').select('grant_id').where('username', '=', username).execute();
  sessions.forEach((session) => grantIds.add(session.grant_id));

  for (const grantId of grantIds) {
    await recordRevocation(store, { kind: 'grant', value: grantId, reason, expiresAt: epochSeconds() + denyListSeconds });
    await store.deleteFrom('oidc_payloads').where('grant_id', '=', grantId).execute();
    await store.deleteFrom('oidc_payloads').where('model', '=', 'Grant').where('id', '=', grantId).execute();
    await store.deleteFrom('browser_sessions').where('grant_id', '=', grantId).execute();
  }
  return grantIds.size;
}
