import type { Logger } from 'pino';

import { epochSeconds, type Store } from '../store/database.ts';
import { latestRevocationEventId, readRevocationEvents, recordRevocation, type Revocation, type RevocationEvent } from '../store/revocation-events.ts';
import type { ConnectionRegistry } from './registry.ts';

/** Settings of the revocation service. */
export interface RevocationServiceOptions {
  store: Store;
  registry: ConnectionRegistry;
  logger: Logger;
  /** How often to read revocations recorded by other processes, in milliseconds. Default 500. */
  pollIntervalMs?: number;
}

/**
 * Records revocations and closes the live sockets they cover. Revocations made in this process
 * close sockets at once; those recorded by management commands in other processes are read from the
 * database every `pollIntervalMs`.
 */
export class RevocationService {
  private lastEventId = 0;
  private timer: NodeJS.Timeout | null = null;
  private polling = false;

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

  /** Records a revocation and closes the matching live connections of this process. */
  async revoke(revocation: Revocation): Promise<void> {
    await recordRevocation(this.options.store, revocation);
    this.apply(revocation);
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
    try {
      let events: RevocationEvent[];
      do {
        events = await readRevocationEvents(this.options.store, this.lastEventId);
        for (const event of events) {
          this.lastEventId = event.id;
          this.apply(event);
        }
      } while (events.length > 0);
    } catch (error) {
      this.options.logger.error({ event: 'revocation.poll_failed', err: error }, 'reading revocation events failed; retrying at the next interval');
    } finally {
      this.polling = false;
    }
  }

  private apply(revocation: Pick<Revocation, 'kind' | 'value' | 'reason'>): void {
    const { registry } = this.options;
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
        closed = registry.closeTokenId(revocation.value.slice(revocation.value.lastIndexOf(' ') + 1), revocation.reason);
        break;
    }
    if (closed > 0) {
      this.options.logger.info({ event: 'revocation.applied', kind: revocation.kind, reason: revocation.reason, closed }, 'revocation closed live connections');
    }
  }
}
