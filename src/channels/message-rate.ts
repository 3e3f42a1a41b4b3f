/** Decision of a message rate limiter about one message. */
export type RateDecision = 'allow' | 'refuse' | 'abuse';

/** Refused messages, net of refill and as a multiple of the rate, after which a connection counts as abusive. */
const abuseFactor = 5;

/**
 * A token bucket for the messages of one connection: `ratePerSecond` tokens refill per second up to
 * a burst of the same size. Refused messages raise an abuse score that drains at the same rate, so
 * a client that briefly bursts gets `rate_limited` errors, and one that keeps sending far above the
 * rate reaches the threshold and is closed. Synchronous and allocation-free, because it runs on
 * every frame.
 */
export class MessageRateLimiter {
  private tokens: number;
  private abuse = 0;
  private updatedAt: number;

  constructor(private readonly ratePerSecond: number, private readonly now: () => number = Date.now) {
    this.tokens = ratePerSecond;
    this.updatedAt = now();
  }

  /** Takes a token for one message. */
  take(): RateDecision {
    const now = this.now();
    const refill = ((now - this.updatedAt) / 1000) * this.ratePerSecond;
    this.updatedAt = now;
    this.tokens = Math.min(this.ratePerSecond, this.tokens + refill);
    this.abuse = Math.max(0, this.abuse - refill);

    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 'allow';
    }
    this.abuse += 1;
    return this.abuse > this.ratePerSecond * abuseFactor ? 'abuse' : 'refuse';
  }
}
