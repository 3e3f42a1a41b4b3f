/**
 * Remembers the DPoP proofs already used, each until it is too old to be accepted anyway.
 * `firstUse` returns true for a new key, and false for a key stored before that has not expired.
 */
export interface ProofReplayCache {
  firstUse(key: string, expiresAtMs: number): Promise<boolean>;
}

/**
 * The replay cache of one process. Entries are kept in insertion order, which is close to expiry
 * order because every proof lives for the same window, so pruning stops at the first live entry.
 */
export class MemoryReplayCache implements ProofReplayCache {
  private readonly seen = new Map<string, number>();
  private readonly maxEntries: number;

  constructor(maxEntries = 200_000) {
    this.maxEntries = maxEntries;
  }

  get size(): number {
    return this.seen.size;
  }

  async firstUse(key: string, expiresAtMs: number): Promise<boolean> {
    return this.claim(key, expiresAtMs);
  }

  /** Records a key like `firstUse`, synchronously, for a cache that layers this one under another. */
  claim(key: string, expiresAtMs: number, now = Date.now()): boolean {
    const known = this.seen.get(key);
    if (known !== undefined && known > now) {
      return false;
    }

    this.prune(now);
    if (this.seen.size >= this.maxEntries) {
      // NOTE: a full cache drops its oldest proof before it expires. Filling it takes 200,000
      // handshakes, each with a valid token and proof, within one proof window.
      this.seen.delete(this.seen.keys().next().value!);
    }
    this.seen.delete(key);
    this.seen.set(key, expiresAtMs);
    return true;
  }

  private prune(now: number): void {
    for (const [key, expiresAt] of this.seen) {
      if (expiresAt > now) {
        return;
      }
      this.seen.delete(key);
    }
  }
}
