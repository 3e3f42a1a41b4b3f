import type { VerifiedToken } from './token-verifier.ts';

/** A revocation check that admitted a token, kept for the next handshake with the same token. */
interface Verdict {
  kind: 'browser' | 'device';
  /** The token as admitted. A browser token may have lost the scopes of devices its user no longer owns. */
  admitted: VerifiedToken;
  epoch: number;
  /** Epoch milliseconds after which the database is read again. */
  expiresAtMs: number;
}

/** Settings of the verdict cache. */
export interface RevocationVerdictOptions {
  /** Maximum time one verdict is reused, in milliseconds. */
  maxAgeMs: number;
  /**
   * Verdicts are trusted only while the revocation events were read successfully within this many
   * milliseconds, so a stalled or failing poll sends every handshake back to the database.
   */
  maxFeedSilenceMs: number;
}

/**
 * Remembers which verified tokens the database found not revoked, so that a client reconnecting with
 * the same token skips the deny-list and registry lookups. Every revocation this process applies,
 * whatever its source, starts a new epoch, and a verdict from an earlier epoch is never used. A
 * revocation that another process records arrives through the event poll, within the poll interval:
 * the bound within which it also closes live sockets. Refusals are not kept.
 *
 * Verdicts are held weakly by the verified token object, which the token cache shares between all
 * handshakes that present the same token, so they go away with that cache's entries.
 */
export class RevocationVerdicts {
  private readonly verdicts = new WeakMap<VerifiedToken, Verdict>();
  private currentEpoch = 0;
  private feedReadAtMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: RevocationVerdictOptions) {}

  /** Changes whenever a revocation is applied or reading the events fails. */
  get epoch(): number {
    return this.currentEpoch;
  }

  /** Returns the token as last admitted, or undefined when the database must be asked. */
  lookup(kind: 'browser' | 'device', token: VerifiedToken): VerifiedToken | undefined {
    const verdict = this.verdicts.get(token);
    if (!verdict || verdict.epoch !== this.currentEpoch || verdict.kind !== kind) {
      return undefined;
    }

    if (Date.now() >= verdict.expiresAtMs || performance.now() - this.feedReadAtMs > this.options.maxFeedSilenceMs) {
      return undefined;
    }
    return verdict.admitted;
  }

  /**
   * Keeps a verdict reached from the database. `basis.epoch` is the epoch read before the lookups
   * began, so a revocation applied while they ran leaves the verdict unused. `basis.holdsUntilMs`
   * ends the verdict early, at a change no event announces, such as the end of a browser session.
   */
  remember(kind: 'browser' | 'device', token: VerifiedToken, admitted: VerifiedToken, basis: { epoch: number; holdsUntilMs: number }): void {
    if (basis.epoch !== this.currentEpoch) {
      return;
    }
    const expiresAtMs = Math.min(Date.now() + this.options.maxAgeMs, token.exp * 1000, basis.holdsUntilMs);
    this.verdicts.set(token, { kind, admitted, epoch: basis.epoch, expiresAtMs });
  }

  /** Drops every verdict: a revocation was applied, or the events could not be read. */
  invalidate(): void {
    this.currentEpoch += 1;
  }

  /**
   * Records a successful read of the revocation events that began at `startedAtMs`, a
   * `performance.now()` reading: events recorded after that moment may still be unread.
   */
  markFeedRead(startedAtMs: number): void {
    this.feedReadAtMs = Math.max(this.feedReadAtMs, startedAtMs);
  }
}
