import type { Logger } from 'pino';

import { ThrottledWarning } from '../cluster/throttled-warning.ts';
import { eventTapOf, type TappedEvent } from '../log/event-tap.ts';
import type { Store } from '../store/database.ts';
import { commandOnlyEvents, isAuditedEvent, pickAuditedFields } from './audit-events.ts';
import { insertAuditEvents, type AuditRecord } from './audit-store.ts';

/** Options of an `AuditWriter`. */
export interface AuditWriterOptions {
  store: Store;
  /** A logger made by `createLogger`; the writer stores the audited events logged through it. */
  logger: Logger;
  /** Time between two writes of the queued events, in milliseconds. Default 500. */
  flushIntervalMs?: number;
  /** Events per INSERT; a queue this long is written at once. Default 100. */
  batchSize?: number;
  /** Events kept in memory while the database is slow or down; later ones are dropped. Default 10000. */
  maxQueued?: number;
  /** Rejected handshakes stored per minute; later ones in the same minute are only counted. Default 600. */
  maxRejectionsPerMinute?: number;
}

/** Rejections by the handshake limits, which come in floods and which metrics count. */
const floodCodes: ReadonlySet<string> = new Set(['rate_limited', 'server_busy', 'too_many_connections']);

/**
 * Stores the security events a logger logs in `audit_events`. Events are queued and written in
 * batches, so that a flood of rejected handshakes costs one INSERT per 100 events rather than one
 * each. The queue is bounded (`maxQueued`): while the database is down or slow, events past the bound
 * are dropped and counted in a warning. Logging an event only appends to the queue, so the request
 * path does not wait for the database.
 */
export class AuditWriter {
  readonly #store: Store;
  readonly #batchSize: number;
  readonly #maxQueued: number;
  readonly #queue: AuditRecord[] = [];
  readonly #timer: NodeJS.Timeout;
  readonly #unsubscribe: () => void;
  readonly #dropWarning: ThrottledWarning;
  readonly #failureWarning: ThrottledWarning;
  readonly #maxRejectionsPerMinute: number;
  readonly #suppressWarning: ThrottledWarning;
  #flushing: Promise<void> | null = null;
  #dropped = 0;
  #suppressed = 0;
  #rejectionMinute = 0;
  #rejectionsThisMinute = 0;

  constructor(options: AuditWriterOptions) {
    this.#store = options.store;
    this.#batchSize = options.batchSize ?? 100;
    this.#maxQueued = options.maxQueued ?? 10_000;
    this.#maxRejectionsPerMinute = options.maxRejectionsPerMinute ?? 600;
    this.#suppressWarning = new ThrottledWarning(options.logger);
    this.#dropWarning = new ThrottledWarning(options.logger);
    this.#failureWarning = new ThrottledWarning(options.logger);
    this.#unsubscribe = eventTapOf(options.logger).subscribe((event) => this.#receive(event));
    this.#timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 500);
    this.#timer.unref();
  }

  /** Events dropped so far because the queue was full. */
  get dropped(): number {
    return this.#dropped;
  }

  #receive(tapped: TappedEvent): void {
    if (!isAuditedEvent(tapped.event) || commandOnlyEvents.has(tapped.event)) {
      return;
    }
    if (tapped.event === 'handshake.rejected' && !this.#admitRejection(tapped)) {
      return;
    }
    this.#enqueue({ time: tapped.time, event: tapped.event, level: tapped.level, fields: pickAuditedFields(tapped.event, tapped.fields) });
  }

  // A client can send rejected handshakes as fast as the network allows. Refusals by the limits
  // themselves are not stored (metrics count them), and the rest are capped per minute, so a flood
  // can neither fill the table nor slow the console's queries without bound.
  #admitRejection(tapped: TappedEvent): boolean {
    if (floodCodes.has(String(tapped.fields.code))) {
      return false;
    }

    const minute = Math.floor(tapped.time / 60_000);
    if (minute !== this.#rejectionMinute) {
      this.#rejectionMinute = minute;
      this.#rejectionsThisMinute = 0;
    }
    this.#rejectionsThisMinute += 1;
    if (this.#rejectionsThisMinute <= this.#maxRejectionsPerMinute) {
      return true;
    }

    this.#suppressed += 1;
    this.#suppressWarning.warn({ event: 'audit.rejections_suppressed', suppressed_total: this.#suppressed, max_per_minute: this.#maxRejectionsPerMinute }, 'more rejected handshakes than the audit trail stores per minute; the rest are counted only in metrics');
    return false;
  }

  #enqueue(record: AuditRecord): void {
    if (this.#queue.length >= this.#maxQueued) {
      this.#dropped += 1;
      this.#dropWarning.warn({ event: 'audit.dropped', dropped_total: this.#dropped, max_queued: this.#maxQueued }, 'the audit queue is full because the database is slow or down; audit events are dropped');
      return;
    }

    this.#queue.push(record);
    if (this.#queue.length >= this.#batchSize) {
      void this.flush();
    }
  }

  /** Writes the queued events; resolves when done, or at once when a write is already running. */
  flush(): Promise<void> {
    if (this.#flushing) {
      return this.#flushing;
    }
    this.#flushing = this.#writeQueued().finally(() => {
      this.#flushing = null;
    });
    return this.#flushing;
  }

  async #writeQueued(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#batchSize);
      try {
        await insertAuditEvents(this.#store, batch);
      } catch (error) {
        // Kept for the next attempt, within the bound, because an outage usually ends.
        const room = Math.max(0, this.#maxQueued - this.#queue.length);
        this.#dropped += batch.length - Math.min(room, batch.length);
        this.#queue.unshift(...batch.slice(0, room));
        this.#failureWarning.warn({ event: 'audit.write_failed', err: error, queued: this.#queue.length }, 'writing audit events failed; they stay queued and are retried');
        return;
      }
    }
  }

  /** Stops listening and writes what is still queued; call it before the store closes. */
  async stop(): Promise<void> {
    this.#unsubscribe();
    clearInterval(this.#timer);
    await this.#flushing;
    await this.flush();
  }
}
