import { sql } from 'kysely';

import type { ConnectionRegistry } from '../gateway/registry.ts';
import type { Store } from '../store/database.ts';
import { isPostgres } from '../store/postgres.ts';

/** The window the console shows, in milliseconds: the last hour. */
export const statsWindowMs = 60 * 60_000;

const minuteMs = 60_000;

/** Rejected handshakes of the last hour with one error code. */
export interface RejectionCount {
  code: string;
  count: number;
}

/** One minute of the console chart. */
export interface MinutePoint {
  /** Epoch milliseconds at the start of the minute. */
  minute: number;
  /** Highest number of live connections on this node seen during the minute, or null before sampling began. */
  connections: number | null;
  /** Handshakes rejected during the minute, from the audit trail of every node. */
  rejections: number;
}

/**
 * Counts the `handshake.rejected` events of the audit trail since `sinceMs` by error code, most
 * frequent first. The grouping runs in the database, so a flood of rejections costs one row per code.
 */
export async function countRejectionsByCode(store: Store, sinceMs: number): Promise<RejectionCount[]> {
  // The fields column is JSON text, and each dialect has its own function to read one member of it.
  const code = isPostgres(store) ? sql<string>`(fields::json ->> 'code')` : sql<string>`json_extract(fields, '$.code')`;
  const rows = await store.selectFrom('audit_events')
    .select([code.as('code'), (eb) => eb.fn.countAll<number | string>().as('count')])
    .where('event', '=', 'handshake.rejected')
    .where('time', '>=', sinceMs)
    .groupBy(code)
    .execute();

  return rows
    .map((row) => ({ code: row.code ?? 'unknown', count: Number(row.count) }))
    .sort((left, right) => right.count - left.count || left.code.localeCompare(right.code));
}

/** Counts the `handshake.rejected` events since `sinceMs` per minute, keyed by the minute's start in epoch milliseconds. */
async function countRejectionsByMinute(store: Store, sinceMs: number): Promise<Map<number, number>> {
  // Both dialects divide two integers without a fraction, which gives the minute number.
  const minute = sql<number | string>`(time / ${sql.lit(minuteMs)})`;
  const rows = await store.selectFrom('audit_events')
    .select([minute.as('minute'), (eb) => eb.fn.countAll<number | string>().as('count')])
    .where('event', '=', 'handshake.rejected')
    .where('time', '>=', sinceMs)
    .groupBy(minute)
    .execute();

  return new Map(rows.map((row) => [Number(row.minute) * minuteMs, Number(row.count)]));
}

/**
 * Samples the number of live connections of this node and keeps the highest value of each minute
 * of the last hour, for the console chart.
 */
export class ConnectionSampler {
  readonly #peaks = new Map<number, number>();
  readonly #registry: ConnectionRegistry;
  readonly #now: () => number;

  constructor(registry: ConnectionRegistry, now: () => number = Date.now) {
    this.#registry = registry;
    this.#now = now;
  }

  /** Records the current number of live connections, deletes minutes older than an hour and returns the count. */
  sample(): number {
    const counts = this.#registry.countByKind();
    const live = counts.browser + counts.device;
    const minute = Math.floor(this.#now() / minuteMs) * minuteMs;
    this.#peaks.set(minute, Math.max(live, this.#peaks.get(minute) ?? 0));

    for (const recorded of this.#peaks.keys()) {
      if (recorded <= minute - statsWindowMs) {
        this.#peaks.delete(recorded);
      }
    }
    return live;
  }

  /** Returns the peak of the minute that starts at `minute`, or null when no sample fell in it. */
  peakOf(minute: number): number | null {
    return this.#peaks.get(minute) ?? null;
  }
}

/**
 * Builds the 60 points of the last hour, oldest first. Connections are this node's peaks since it
 * started. Rejections come from the audit trail, so they survive a restart and include other nodes.
 */
export async function minuteSeries(store: Store, sampler: ConnectionSampler, nowMs: number = Date.now()): Promise<MinutePoint[]> {
  sampler.sample();
  const currentMinute = Math.floor(nowMs / minuteMs) * minuteMs;
  const firstMinute = currentMinute - statsWindowMs + minuteMs;
  const rejections = await countRejectionsByMinute(store, firstMinute);

  const points: MinutePoint[] = [];
  for (let minute = firstMinute; minute <= currentMinute; minute += minuteMs) {
    points.push({ minute, connections: sampler.peakOf(minute), rejections: rejections.get(minute) ?? 0 });
  }
  return points;
}
