import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

import { MemoryReplayCache, type ProofReplayCache } from '../gateway/dpop/replay-cache.ts';

/**
 * Creates a DPoP replay cache shared by every node through Redis (`SET NX PX`), so a proof used on
 * one node is rejected on the others. Each node also keeps its own cache, which rejects the proofs it
 * stored without a round trip. While Redis cannot be reached, `fallback` (the database) decides. A
 * proof recorded in Redis before the outage is unknown there (docs/security-model.md).
 */
export function createSharedReplayCache(client: Redis, keyPrefix: string, logger: Logger, fallback: ProofReplayCache): ProofReplayCache {
  const local = new MemoryReplayCache();

  return {
    async firstUse(key, expiresAtMs) {
      if (!local.claim(key, expiresAtMs)) {
        return false;
      }
      if (client.status !== 'ready') {
        return fallback.firstUse(key, expiresAtMs);
      }

      const ttlMs = Math.max(1, Math.ceil(expiresAtMs - Date.now()));
      try {
        return await client.set(`${keyPrefix}${key}`, '1', 'PX', ttlMs, 'NX') === 'OK';
      } catch (error) {
        logger.warn({ event: 'dpop.replay_cache_unavailable', err: error }, 'the DPoP replay cache in Redis failed, so the proof was checked against the database');
        return fallback.firstUse(key, expiresAtMs);
      }
    },
  };
}
