import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';

import { rateLimiterFrom, type RateLimiterFactory } from '../gateway/handshake-limits.ts';
import type { ClusterKeys } from './keys.ts';

/**
 * Returns a factory of rate limiters that count in Redis, so that every node shares one budget per
 * address or client id. While Redis is not connected, each limiter counts in this process's memory
 * instead (the insurance limiter of `rate-limiter-flexible`), so during an outage every node allows
 * the full budget on its own. The memory counts are not merged back when Redis returns.
 */
export function createRedisRateLimiterFactory(client: Redis, keys: ClusterKeys): RateLimiterFactory {
  return (points, durationSeconds, name) => rateLimiterFrom(new RateLimiterRedis({
    storeClient: client,
    keyPrefix: keys.rateLimit(name),
    points,
    duration: durationSeconds,
    // The insurance limiter decides as soon as the connection is not ready, without a command that
    // would only fail.
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory({ points, duration: durationSeconds }),
  }));
}
