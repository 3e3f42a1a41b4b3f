import type { IncomingMessage } from 'node:http';
import net from 'node:net';

import { RateLimiterMemory, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

import type { Options } from '../config/options.ts';
import { normalizeAddress } from './guard/transport.ts';
import { headerValues } from './handshake.ts';

/** The outcome of one counted attempt. `retryAfterSeconds` fits a `Retry-After` header. */
export type RateLimitDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * A fixed-window counter of attempts per key. The in-memory implementation counts per process, and a
 * shared store can implement the same contract so that several gateway processes share one budget.
 */
export interface RateLimiter {
  /** Counts one attempt for `key` and returns whether it is within the limit. */
  consume(key: string): Promise<RateLimitDecision>;
}

/**
 * Creates a rate limiter that allows `points` attempts per key in each window of `durationSeconds`.
 * `name` distinguishes the limiters of one process, e.g. `handshakes:ip`, so that a shared store
 * keeps their keys apart.
 */
export type RateLimiterFactory = (points: number, durationSeconds: number, name: string) => RateLimiter;

/**
 * Creates an in-memory fixed-window limiter. Each key's entry expires with its window.
 * NOTE: the number of keys is not capped; every key seen within one window stays in memory until
 * the window ends.
 */
export function createMemoryRateLimiter(points: number, durationSeconds: number): RateLimiter {
  return rateLimiterFrom(new RateLimiterMemory({ points, duration: durationSeconds }));
}

/** Adapts a `rate-limiter-flexible` limiter, in memory or in a shared store, to the `RateLimiter` contract. */
export function rateLimiterFrom(limiter: RateLimiterAbstract): RateLimiter {
  return {
    async consume(key) {
      try {
        await limiter.consume(key);
        return { allowed: true };
      } catch (rejection) {
        // Over the limit the promise rejects with a RateLimiterRes, and any other value is a store failure.
        if (!(rejection instanceof RateLimiterRes)) {
          throw rejection;
        }
        return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)) };
      }
    },
  };
}

/**
 * Counts handshakes that are being checked, between the `upgrade` event and the decision. Each one
 * keeps a socket open and waits on token and database work, so a flood must not pile up without bound.
 */
export class PendingHandshakes {
  private count = 0;

  constructor(private readonly max: number) {}

  /** Number of handshakes being checked now. */
  get size(): number {
    return this.count;
  }

  /** Counts one more handshake and returns true, or returns false when `max` are already pending. */
  tryEnter(): boolean {
    if (this.count >= this.max) {
      return false;
    }
    this.count += 1;
    return true;
  }

  /** Ends one handshake counted by `tryEnter`. */
  leave(): void {
    this.count = Math.max(0, this.count - 1);
  }
}

/** Options that set the handshake limits. */
export type HandshakeLimitOptions = Pick<Options,
  'handshakesPerIpPerMinute' | 'handshakesPerClientPerMinute' | 'maxPendingHandshakes' | 'trustedProxies'>;

/** The handshake limits of one gateway process. */
export interface HandshakeLimits {
  /** Handshakes per client address (an IPv6 address counts under its /64 prefix) per minute. */
  perAddress: RateLimiter;
  /** Authenticated device handshakes per client id per minute. */
  perClient: RateLimiter;
  pending: PendingHandshakes;
  /** Returns the key under which `perAddress` counts this request. */
  addressKey(request: IncomingMessage): string;
}

/** Builds the handshake limits from the options, with in-memory limiters unless a factory is given. */
export function createHandshakeLimits(options: HandshakeLimitOptions, createLimiter: RateLimiterFactory = createMemoryRateLimiter): HandshakeLimits {
  const trustedProxies = new Set(options.trustedProxies.map(normalizeAddress));

  return {
    perAddress: createLimiter(options.handshakesPerIpPerMinute, 60, 'handshakes:ip'),
    perClient: createLimiter(options.handshakesPerClientPerMinute, 60, 'handshakes:client'),
    pending: new PendingHandshakes(options.maxPendingHandshakes),
    addressKey: (request) => addressRateLimitKey(clientAddress(request, trustedProxies)),
  };
}

/**
 * Returns the client's address: the TCP peer, or, when the peer is a trusted proxy, the rightmost
 * `X-Forwarded-For` entry. That entry is the address the proxy itself saw. Entries further left
 * were sent by the client and can be forged. Trusted proxies match by exact address, as in the
 * transport check.
 */
export function clientAddress(request: IncomingMessage, trustedProxies: ReadonlySet<string>): string {
  const peer = normalizeAddress(request.socket.remoteAddress ?? '');
  if (!trustedProxies.has(peer)) {
    return peer;
  }

  // Node joins repeated X-Forwarded-For headers with commas in `headers`, so the raw lines are
  // joined the same way before the rightmost entry is taken.
  const entries = headerValues(request, 'x-forwarded-for').join(',').split(',');
  const forwarded = parseForwardedAddress(entries[entries.length - 1] ?? '');
  return forwarded ?? peer;
}

/**
 * Returns the key an address is rate-limited under. One IPv6 host is usually assigned a whole /64, so
 * an IPv6 address counts under its /64 prefix, and an IPv4 address counts alone.
 */
export function addressRateLimitKey(address: string): string {
  // Every IPv6 address contains a colon, and the test spares IPv4 peers the IPv6 pattern match.
  if (!address.includes(':') || !net.isIPv6(address)) {
    return address;
  }
  return `${ipv6Groups(address).slice(0, 4).join(':')}::/64`;
}

// Accepts a bare address or one with a port (`192.0.2.1:443`, `[2001:db8::1]:443`), as some proxies
// write them. Anything else is not an address and yields null.
function parseForwardedAddress(entry: string): string | null {
  let candidate = entry.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(candidate);
  if (bracketed) {
    candidate = bracketed[1];
  } else if (/^[\d.]+:\d+$/.test(candidate)) {
    candidate = candidate.slice(0, candidate.indexOf(':'));
  }

  candidate = normalizeAddress(candidate);
  return net.isIP(candidate) === 0 ? null : candidate;
}

// Expands a valid IPv6 address into its eight groups, without leading zeros and zone id. An
// embedded IPv4 tail fills the last two groups, which the /64 prefix never includes, so its value
// is not converted.
function ipv6Groups(address: string): string[] {
  const withoutZone = address.split('%')[0];
  const [head, tail] = withoutZone.includes('::') ? withoutZone.split('::') : [withoutZone, null];
  const toGroups = (part: string) => (part === '' ? [] : part.split(':').flatMap((group) => (group.includes('.') ? ['0', '0'] : [group])));

  const headGroups = toGroups(head);
  const tailGroups = tail === null ? [] : toGroups(tail);
  const zeros = new Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  return [...headGroups, ...zeros, ...tailGroups].map((group) => Number.parseInt(group, 16).toString(16));
}
