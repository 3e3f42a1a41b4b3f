import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

import { MemoryReplayCache, type ProofReplayCache } from '../gateway/dpop/replay-cache.ts';

/**
 * Creates a DPoP replay cache shared by every node through Redis (`SET NX PX`), so a proof used on
 * one node is rejected on the others. Each node also keeps its own cache, which rejects the proofs it
 * stored without a round trip. While Redis cannot be reached, the node's own cache decides alone, so
 * a proof replayed to another node within its window is accepted there (docs/security-model.md).
 */
export function createSharedReplayCache(client: Redis, keyPrefix: string, logger: Logger): ProofReplayCache {
  const local = new MemoryReplayCache();

  return {
    async firstUse(key, expiresAtMs) {
      if (!local.claim(key, expiresAtMs)) {
        return false;
      }
      if (client.status !== 'ready') {
        return true;
      }

      const ttlMs = Math.max(1, Math.ceil(expiresAtMs - Date.now()));
      try {
        return await client.set(`${keyPrefix}${key}`, '1', 'PX', ttlMs, 'NX') === 'OK';
      } catch (error) {
        logger.warn({ event: 'dpop.replay_cache_unavailable', err: error }, 'the shared DPoP replay cache failed, so this node checked the proof against its own cache only');
        return true;
      }
    },
  };
}
