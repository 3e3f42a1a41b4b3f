import { announceThroughAdminSocket } from '../gateway/admin-socket.ts';
import type { Store } from '../store/database.ts';
import { recordRevocation, type Revocation } from '../store/revocation-events.ts';

/**
 * Records a revocation in the database, the durable path every node polls, then has the server on
 * this data directory, if one runs, to apply it at once and announce it through Redis.
 */
export async function recordAndAnnounce(store: Store, dataDir: string, revocation: Revocation): Promise<void> {
  await recordRevocation(store, revocation);
  await announceThroughAdminSocket(dataDir, revocation);
}
