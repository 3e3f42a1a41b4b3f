import type { Logger } from 'pino';

import type { Store } from '../store/database.ts';
import { pruneAuditEvents } from './audit-store.ts';

const dayMs = 86_400_000;
// Retention is counted in days, so an hour between two runs keeps at most an hour of extra rows.
const pruneIntervalMs = 3_600_000;

/** Options of `startAuditPruning`. */
export interface AuditRetention {
  store: Store;
  logger: Logger;
  /** Days an audit event is kept. */
  retentionDays: number;
}

/** Deletes the audit events older than `retentionDays`; returns how many rows it deleted. */
export function pruneExpiredAuditEvents(store: Store, retentionDays: number, nowMs = Date.now()): Promise<number> {
  return pruneAuditEvents(store, { beforeMs: nowMs - retentionDays * dayMs });
}

/**
 * Prunes expired audit events now and then every hour, on a timer that does not keep the process
 * alive. Every server of a cluster runs it; the deletes of two servers do not conflict. Returns the
 * function that stops the timer and waits for a running prune, so the store can close after it.
 */
export function startAuditPruning(retention: AuditRetention): () => Promise<void> {
  const { store, logger, retentionDays } = retention;
  let running: Promise<void> = Promise.resolve();
  const prune = () => {
    running = pruneExpiredAuditEvents(store, retentionDays).then(
      (deleted) => {
        if (deleted > 0) {
          logger.info({ event: 'audit.pruned', deleted, retention_days: retentionDays }, 'deleted expired audit events');
        }
      },
      (error: unknown) => logger.error({ event: 'audit.prune_failed', err: error }, 'pruning audit events failed; the next run retries'),
    );
  };

  const first = setTimeout(prune, 0);
  first.unref();
  const timer = setInterval(prune, pruneIntervalMs);
  timer.unref();
  return () => {
    clearTimeout(first);
    clearInterval(timer);
    return running;
  };
}
