// Browser-safe: no Node imports, because the browser client bundles this file.

/** Settings of a full-jitter exponential backoff. */
export interface BackoffOptions {
  /** Ceiling of the first delay, in milliseconds. Default 500. */
  baseMs?: number;
  /** Largest ceiling any delay can have, in milliseconds. Default 30000. */
  capMs?: number;
  /** Source of uniform numbers in [0, 1); tests pass a fixed sequence. Default `Math.random`. */
  random?: () => number;
}

/** Default ceiling of the first delay, in milliseconds. */
export const defaultBackoffBaseMs = 500;

/** Default largest delay ceiling, in milliseconds. */
export const defaultBackoffCapMs = 30_000;

/** Returns the ceiling of the delay before retry `attempt` (0-based): `min(capMs, baseMs * 2^attempt)`. */
export function backoffCeilingMs(attempt: number, baseMs = defaultBackoffBaseMs, capMs = defaultBackoffCapMs): number {
  // 2^31 already exceeds any sensible cap; the clamp keeps the product finite for huge attempts.
  const exponent = Math.min(Math.max(0, Math.floor(attempt)), 31);
  return Math.min(capMs, baseMs * 2 ** exponent);
}

/**
 * Full-jitter exponential backoff: each delay is uniform in `[0, min(cap, base * 2^attempt))`, so many
 * clients that lost the same server spread their retries instead of returning together.
 */
export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? defaultBackoffBaseMs;
    this.capMs = options.capMs ?? defaultBackoffCapMs;
    this.random = options.random ?? Math.random;
    if (!(this.baseMs > 0) || !(this.capMs >= this.baseMs)) {
      throw new RangeError(`backoff needs baseMs > 0 and capMs >= baseMs, got baseMs ${this.baseMs} and capMs ${this.capMs}`);
    }
  }

  /** Number of delays handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** Returns the next delay in whole milliseconds and counts the attempt. */
  next(): number {
    const ceiling = backoffCeilingMs(this.attempt, this.baseMs, this.capMs);
    this.attempt += 1;
    return Math.floor(this.random() * ceiling);
  }

  /** Starts again from the first delay, after a connection that stayed open long enough. */
  reset(): void {
    this.attempt = 0;
  }
}

/** The delay before the next attempt, in milliseconds, and whether a server's reconnect hint set it. */
export interface RetryDelay {
  retryInMs: number;
  retryHinted?: true;
}

/**
 * Picks the delay before the next attempt. A stopping server's reconnect hint replaces the backoff
 * delay and resets the attempt count, because the server already spread its hints over its clients.
 * Without a hint, it takes the next backoff delay, but no less than `notBeforeMs`.
 */
export function nextRetry(backoff: Backoff, reconnectAfterMs: number | null, notBeforeMs = 0): RetryDelay {
  if (reconnectAfterMs !== null) {
    backoff.reset();
    return { retryInMs: reconnectAfterMs, retryHinted: true };
  }
  return { retryInMs: Math.max(backoff.next(), notBeforeMs) };
}
