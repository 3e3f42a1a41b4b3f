import type { Store } from '../store/database.ts';

/** One security event as the audit trail stores it. */
export interface AuditRecord {
  /** Epoch milliseconds. */
  time: number;
  event: string;
  /** pino level number: 30 info, 40 warn, 50 error. */
  level: number;
  /** The allow-listed fields of the event. */
  fields: Record<string, string | number | boolean>;
}

/** A stored event as read back, with its id. */
export type StoredAuditRecord = AuditRecord & { id: number };

/** Filter and size of a `queryAuditEvents` result. */
export interface AuditQuery {
  /** Epoch milliseconds; older events are left out. */
  sinceMs: number;
  /** Event names to keep; empty keeps every event. */
  events: readonly string[];
  /** Maximum number of events returned; the newest are kept. */
  limit: number;
}

/** Inserts `records` with one statement; does nothing for an empty list. */
export async function insertAuditEvents(store: Store, records: readonly AuditRecord[]): Promise<void> {
  if (records.length === 0) {
    return;
  }
  await store.insertInto('audit_events')
    .values(records.map((record) => ({ time: record.time, event: record.event, level: record.level, fields: JSON.stringify(record.fields) })))
    .execute();
}

/** Reads the newest `limit` events since `sinceMs`, returned oldest first. */
export async function queryAuditEvents(store: Store, query: AuditQuery): Promise<StoredAuditRecord[]> {
  let select = store.selectFrom('audit_events').select(['id', 'time', 'event', 'level', 'fields'])
    .where('time', '>=', query.sinceMs);
  if (query.events.length > 0) {
    select = select.where('event', 'in', [...query.events]);
  }
  const rows = await select.orderBy('time', 'desc').orderBy('id', 'desc').limit(query.limit).execute();

  return rows.reverse().map((row) => ({
    id: Number(row.id),
    time: Number(row.time),
    event: row.event,
    level: Number(row.level),
    fields: JSON.parse(row.fields) as StoredAuditRecord['fields'],
  }));
}

/** Options of `pruneAuditEvents`. */
export interface AuditPruning {
  /** Epoch milliseconds; older events are deleted. */
  beforeMs: number;
  /** Rows deleted per statement. Default 1000. */
  batchSize?: number;
  /** Maximum number of DELETE statements per call, so that a call ends while events keep arriving. Default 100. */
  maxBatches?: number;
}

/**
 * Deletes events older than `beforeMs` in batches of `batchSize` rows, so that no statement holds
 * a long lock, and returns how many rows it deleted. Several servers may run it on one database at
 * once: a row another one deleted first is simply not counted.
 */
export async function pruneAuditEvents(store: Store, pruning: AuditPruning): Promise<number> {
  const batchSize = pruning.batchSize ?? 1000;
  const maxBatches = pruning.maxBatches ?? 100;
  let deleted = 0;
  for (let batch = 0; batch < maxBatches; batch += 1) {
    const oldest = store.selectFrom('audit_events').select('id').where('time', '<', pruning.beforeMs).limit(batchSize);
    const result = await store.deleteFrom('audit_events').where('id', 'in', oldest).executeTakeFirst();
    const count = Number(result.numDeletedRows);
    deleted += count;
    if (count < batchSize) {
      break;
    }
  }
  return deleted;
}
