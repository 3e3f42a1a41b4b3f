/** Options for `LoginThrottle`, with every duration in milliseconds. */
export interface LoginThrottleOptions {
  /** Failures within the window for one account from one client IP that lock the account for that IP (default 5). */
  maxFailuresPerAccountAndIp?: number;
  /** Failures within the window for one account from all client IPs that lock the account for every IP (default 100). */
  maxFailuresPerAccount?: number;
  /** Failures within the window, across all accounts, that lock a client IP (default 20). */
  maxFailuresPerIp?: number;
  /** Time a failure keeps counting, in ms (default 15 minutes). */
  windowMs?: number;
  /** Duration of a lock, in ms (default 15 minutes). */
  lockoutMs?: number;
  /** Maximum number of counters tracked (accounts, IPs and account-IP pairs), beyond which the least recently failed are dropped (default 100 000). */
  maxEntries?: number;
  /** Clock returning epoch ms (default `Date.now`), which tests replace with a fake. */
  now?: () => number;
}

/** A login attempt, identified by the username as typed and the client IP that the gateway resolved. */
export interface LoginAttempt {
  username: string;
  ip: string;
}

/** The outcome of `LoginThrottle.check`, whose `retryAfterSeconds` fits a `Retry-After` header. */
export type ThrottleDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

interface Entry {
  // Epoch ms of the failures still inside the window, oldest first.
  failures: number[];
  // Epoch ms when the lock ends, or 0 when not locked.
  lockedUntil: number;
  // Epoch ms after which the entry contains neither a counted failure nor a lock.
  expiresAt: number;
}

/**
 * Counts failed logins in memory, per account (username, case-folded) from one client IP, per
 * account from all IPs and per client IP, and locks each for `lockoutMs` once it reaches its limit
 * within `windowMs`. A guesser at one IP thus locks the account only for that IP, and the real user
 * can still log in from elsewhere. Only guessing spread over many IPs locks the account everywhere.
 */
export class LoginThrottle {
  readonly #maxFailuresPerAccountAndIp: number;
  readonly #maxFailuresPerAccount: number;
  readonly #maxFailuresPerIp: number;
  readonly #windowMs: number;
  readonly #lockoutMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;

  // Insertion order is kept equal to last-failure order, so the first key is always the stalest.
  readonly #entries = new Map<string, Entry>();

  // Logins reserved by `reserve` whose password check has not finished, per account and IP key.
  readonly #pending = new Map<string, number>();

  constructor(options: LoginThrottleOptions = {}) {
    this.#maxFailuresPerAccountAndIp = positiveInteger('maxFailuresPerAccountAndIp', options.maxFailuresPerAccountAndIp ?? 5);
    this.#maxFailuresPerAccount = positiveInteger('maxFailuresPerAccount', options.maxFailuresPerAccount ?? 100);
    this.#maxFailuresPerIp = positiveInteger('maxFailuresPerIp', options.maxFailuresPerIp ?? 20);
    this.#windowMs = positiveInteger('windowMs', options.windowMs ?? 15 * 60_000);
    this.#lockoutMs = positiveInteger('lockoutMs', options.lockoutMs ?? 15 * 60_000);
    this.#maxEntries = positiveInteger('maxEntries', options.maxEntries ?? 100_000);
    this.#now = options.now ?? Date.now;
  }

  /** Number of counters (accounts, IPs and account-IP pairs) currently tracked, for metrics and tests. */
  get size(): number {
    return this.#entries.size;
  }

  /** Returns whether a login may be tried now, to be called before verifying the password. */
  check(attempt: LoginAttempt): ThrottleDecision {
    const now = this.#now();
    const lockedUntil = Math.max(...this.#counters(attempt).map(({ key }) => this.#lockedUntil(key, now)));

    if (lockedUntil > now) {
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((lockedUntil - now) / 1000)) };
    }

    return { allowed: true };
  }

  /**
   * Like `check`, and also reserves the attempt until `recordFailure` or `recordSuccess` reports its
   * outcome. Password checks take tens of milliseconds, so without the reservation many parallel
   * guesses would all pass `check` before the first failure is counted.
   */
  reserve(attempt: LoginAttempt): ThrottleDecision {
    const decision = this.check(attempt);
    if (!decision.allowed) {
      return decision;
    }

    const now = this.#now();
    const counters = this.#counters(attempt);
    if (counters.some(({ key, limit }) => this.#inFlightAndRecent(key, now) >= limit)) {
      return { allowed: false, retryAfterSeconds: 1 };
    }

    for (const { key } of counters) {
      this.#pending.set(key, (this.#pending.get(key) ?? 0) + 1);
    }
    return decision;
  }

  // Every counter a login attempt is checked against and counted in, with its limit.
  #counters(attempt: LoginAttempt): Array<{ key: string; limit: number }> {
    return [
      { key: accountAndIpKey(attempt.username, attempt.ip), limit: this.#maxFailuresPerAccountAndIp },
      { key: accountKey(attempt.username), limit: this.#maxFailuresPerAccount },
      { key: ipKey(attempt.ip), limit: this.#maxFailuresPerIp },
    ];
  }

  #inFlightAndRecent(key: string, now: number): number {
    const windowStart = now - this.#windowMs;
    const recent = this.#entries.get(key)?.failures.filter((at) => at > windowStart).length ?? 0;
    return recent + (this.#pending.get(key) ?? 0);
  }

  #release(attempt: LoginAttempt): void {
    for (const { key } of this.#counters(attempt)) {
      const count = (this.#pending.get(key) ?? 0) - 1;
      if (count > 0) {
        this.#pending.set(key, count);
      } else {
        this.#pending.delete(key);
      }
    }
  }

  /**
   * Counts one failed login against the account at this IP, the account and the IP. Call it for
   * unknown usernames too, so a lock does not reveal whether an account exists.
   */
  recordFailure(attempt: LoginAttempt): void {
    this.#release(attempt);
    const now = this.#now();
    this.#evictExpired(now);

    for (const { key, limit } of this.#counters(attempt)) {
      this.#countFailure(key, limit, now);
    }

    this.#evictBeyondCap();
  }

  /** Ends a reservation without counting it, for an attempt whose password could not be checked at all. */
  cancel(attempt: LoginAttempt): void {
    this.#release(attempt);
  }

  /**
   * Forgets the account's failures at this IP after a successful login. It keeps the IP's, because
   * one IP may be guessing many accounts, and the account's from all IPs, because elsewhere others
   * may be guessing it.
   */
  recordSuccess(attempt: LoginAttempt): void {
    this.#release(attempt);
    this.#entries.delete(accountAndIpKey(attempt.username, attempt.ip));
  }

  #lockedUntil(key: string, now: number): number {
    const entry = this.#entries.get(key);

    if (entry === undefined || entry.lockedUntil <= now) {
      return 0;
    }

    return entry.lockedUntil;
  }

  #countFailure(key: string, limit: number, now: number): void {
    const entry = this.#entries.get(key) ?? { failures: [], lockedUntil: 0, expiresAt: 0 };

    // A login that passed `check` just before the lock was set may still report its failure. The
    // lock is already in place, so the failure neither counts nor extends it.
    if (entry.lockedUntil > now) {
      return;
    }

    const windowStart = now - this.#windowMs;
    entry.failures = entry.failures.filter((at) => at > windowStart);
    entry.failures.push(now);
    entry.lockedUntil = 0;
    entry.expiresAt = now + this.#windowMs;

    // After a lock the count starts again from zero, so each lock buys an attacker `limit` guesses.
    if (entry.failures.length >= limit) {
      entry.failures = [];
      entry.lockedUntil = now + this.#lockoutMs;
      entry.expiresAt = entry.lockedUntil;
    }

    // Re-inserting moves the key to the end, keeping the map in last-failure order.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
  }

  // Walks from the stalest entry and stops at the first live one, so each call costs only what it
  // removes. When windowMs and lockoutMs differ, dead entries may wait behind a live one until later.
  #evictExpired(now: number): void {
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt > now) {
        return;
      }

      this.#entries.delete(key);
    }
  }

  // NOTE: an attacker who spreads failures over more than `maxEntries` keys can push out a live
  // lock early. That is the price of bounded memory.
  #evictBeyondCap(): void {
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) {
        return;
      }

      this.#entries.delete(key);
    }
  }
}

// Folding makes `Alice`, `ALICE` and a full-width `Ａｌｉｃｅ` share one counter. It folds more than the
// user store does, because then spelling variants cannot buy extra guesses.
function accountKey(username: string): string {
  return `account:${username.normalize('NFKC').toLowerCase()}`;
}

// NOTE: IPv6 clients are keyed by full address, so a host that holds a /64 can rotate addresses.
// Where that matters, pass the prefix as the IP.
function ipKey(ip: string): string {
  return `ip:${ip}`;
}

// Each kind of counter has its own prefix, and JSON encodes the pair without ambiguity, so no typed
// username can make the key of a pair equal that of an account or of another pair.
function accountAndIpKey(username: string, ip: string): string {
  return `pair:${JSON.stringify([username.normalize('NFKC').toLowerCase(), ip])}`;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`LoginThrottle option ${name} is invalid: expected a positive integer, got ${value}.`);
  }

  return value;
}
