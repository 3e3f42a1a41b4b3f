import type { Logger } from 'pino';

import { epochSeconds, type Store } from '../store/database.ts';
import { latestRevocationEventId, readRevocationEvents, recordRevocation, type Revocation, type RevocationEvent } from '../store/revocation-events.ts';
import type { ConnectionRegistry } from './registry.ts';
import type { RevocationVerdicts } from './revocation-verdicts.ts';

/** Settings of the revocation service. */
export interface RevocationServiceOptions {
  store: Store;
  registry: ConnectionRegistry;
  logger: Logger;
  /** How often to read revocations recorded by other processes, in milliseconds. Default 500. */
  pollIntervalMs?: number;
  /**
   * Called after each revocation this process records, to tell the other nodes at once. The Redis
   * bridge sets it; without Redis, other nodes learn of the revocation from the database poll.
   */
  announce?: (revocation: RevocationNotice) => void;
  /** The handshake's cache of tokens found not revoked, which every applied revocation empties. */
  verdicts?: RevocationVerdicts;
}

/** The part of a revocation that closes connections, as read back or received from another node. */
export type RevocationNotice = Pick<Revocation, 'kind' | 'value' | 'reason'>;

/** Minimum time between two `revocation.poll_failed` lines of one run of failed polls, in milliseconds. */
const failureLogIntervalMs = 60_000;

/** Origin of a revocation, logged with `revocation.applied`: this process, the database poll or Redis. */
type RevocationSource = 'local' | 'command' | 'database' | 'redis';

/**
 * Records revocations and closes the live sockets they cover. Revocations made in this process
 * close sockets at once, and so do those that another node announces through Redis. Those recorded
 * by management commands or by nodes that could not announce them are read from the database every
 * `pollIntervalMs`. A revocation may arrive both ways, and applying it twice closes nothing more.
 */
export class RevocationService {
  private lastEventId = 0;
  private timer: NodeJS.Timeout | null = null;
  private polling = false;
  /** Polls failed in a row, reset by the next poll that succeeds. */
  private failedPolls = 0;
  private lastFailureLoggedMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: RevocationServiceOptions) {}

  /** Skips events recorded before this start, then reads new ones periodically. */
  async start(): Promise<void> {
    this.lastEventId = await latestRevocationEventId(this.options.store);
    this.timer = setInterval(() => void this.poll(), this.options.pollIntervalMs ?? 500);
    this.timer.unref();
  }

  /** Stops reading events. */
  stop(): void {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Records a revocation, closes the matching live connections of this process and announces it to other nodes. */
  async revoke(revocation: Revocation): Promise<void> {
    await recordRevocation(this.options.store, revocation);
    this.apply(revocation, 'local');
    this.options.announce?.(revocation);
  }

  /**
   * Closes the live connections of this process that a revocation a management command recorded
   * covers, and announces it to other nodes, so they act before their next database poll.
   */
  applyRecorded(revocation: RevocationNotice): void {
    this.apply(revocation, 'command');
    this.options.announce?.(revocation);
  }

  /** Closes the live connections of this process that a revocation announced by another node covers. */
  applyAnnounced(revocation: RevocationNotice): void {
    this.apply(revocation, 'redis');
  }

  /** Revokes a grant until its access tokens, issued for at most `accessTokenTtlSeconds`, have expired. */
  async revokeGrant(grantId: string, reason: string, accessTokenTtlSeconds: number): Promise<void> {
    await this.revoke({ kind: 'grant', value: grantId, reason, expiresAt: epochSeconds() + accessTokenTtlSeconds + 60 });
  }

  /** Reads events recorded since the last poll and applies them; overlapping polls are skipped. */
  async poll(): Promise<void> {
    if (this.polling) {
      return;
    }
    this.polling = true;
    const startedAtMs = performance.now();
    try {
      let events: RevocationEvent[];
      do {
        events = await readRevocationEvents(this.options.store, this.lastEventId);
        for (const event of events) {
          this.lastEventId = event.id;
          this.apply(event, 'database');
        }
      } while (events.length > 0);
      this.options.verdicts?.markFeedRead(startedAtMs);
      this.endFailedPolls();
    } catch (error) {
      // A revocation recorded elsewhere may be unread now, so cached verdicts are not trusted.
      this.options.verdicts?.invalidate();
      this.logFailedPoll(error);
    } finally {
      this.polling = false;
    }
  }

  // A database outage fails every poll, twice a second by default, so a run of failures logs its
  // first one at once and then one line per interval. Open connections stay open meanwhile.
  private logFailedPoll(error: unknown): void {
    this.failedPolls += 1;
    const now = Date.now();
    if (now - this.lastFailureLoggedMs < failureLogIntervalMs) {
      return;
    }

    this.lastFailureLoggedMs = now;
    this.options.logger.error({ event: 'revocation.poll_failed', err: error, failed_polls: this.failedPolls }, 'reading revocation events failed; retrying at the next interval');
  }

  private endFailedPolls(): void {
    if (this.failedPolls === 0) {
      return;
    }

    this.options.logger.info({ event: 'revocation.poll_resumed', failed_polls: this.failedPolls }, 'reading revocation events works again');
    this.failedPolls = 0;
    this.lastFailureLoggedMs = Number.NEGATIVE_INFINITY;
  }

  private apply(revocation: RevocationNotice, source: RevocationSource): void {
    const { registry } = this.options;
    // Before the sockets close: a handshake that passed its checks must see the new epoch.
    this.options.verdicts?.invalidate();
    let closed = 0;
    switch (revocation.kind) {
      case 'grant':
        closed = registry.closeGrant(revocation.value, revocation.reason);
        break;
      case 'client':
        closed = registry.closeClient(revocation.value, revocation.reason);
        registry.withdrawDevice(revocation.value);
        break;
      case 'user':
        closed = registry.closeSubject(revocation.value, revocation.reason);
        break;
      case 'token':
        // The value is the issuer, a space and the `jti`; an issuer has no space, a `jti` may.
        closed = registry.closeTokenId(revocation.value.slice(revocation.value.indexOf(' ') + 1), revocation.reason);
        break;
    }
    if (closed > 0) {
      this.options.logger.info({ event: 'revocation.applied', kind: revocation.kind, reason: revocation.reason, closed, source }, 'revocation closed live connections');
    }
  }
}
