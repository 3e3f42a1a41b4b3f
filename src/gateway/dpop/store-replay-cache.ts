import type { Logger } from 'pino';

import type { Store } from '../../store/database.ts';
import { pruneUsedProofs, recordProofUse } from '../../store/used-proofs.ts';
import { MemoryReplayCache, type ProofReplayCache } from './replay-cache.ts';

/** Seconds between two prunings of expired entries. */
const pruneIntervalSeconds = 60;

/**
 * Creates the replay cache of a deployment without Redis: used proofs are recorded in the database,
 * so a proof used before a restart, or on another node that shares the database, is rejected too.
 * The process's own cache rejects the proofs it has stored without a database round trip.
 */
export function createStoreReplayCache(store: Store, logger: Logger): ProofReplayCache {
  const local = new MemoryReplayCache();
  let nextPruneAtMs = 0;

  const prune = () => {
    pruneUsedProofs(store).catch((error: unknown) => {
      logger.warn({ event: 'dpop.prune_failed', err: error }, 'deleting expired DPoP proofs failed; the next pruning retries');
    });
  };

  return {
    async firstUse(key, expiresAtMs) {
      if (!local.claim(key, expiresAtMs)) {
        return false;
      }

      const now = Date.now();
      if (now >= nextPruneAtMs) {
        nextPruneAtMs = now + pruneIntervalSeconds * 1000;
        prune();
      }
      return recordProofUse(store, key, Math.ceil(expiresAtMs / 1000));
    },
  };
}
