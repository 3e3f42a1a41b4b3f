// Browser-safe: no Node imports, because the browser client bundles this file.

import type { SendPacer } from './channel-frames.ts';

/** The conversion of outbox entries into frames. */
export interface OutboxCodec<Entry> {
  /** Serialises an entry. `id` is null for an untracked entry. */
  serialise(entry: Entry, id: number | null): string;
  /** True for an entry that gets an id and waits in `sent` for its reply. */
  tracked(entry: Entry): boolean;
  /** Called after a tracked entry was sent. */
  onSent?(entry: Entry): void;
}

/**
 * The outgoing frames of one client: queued in order, sent through a pacer while a connection is
 * attached, and numbered with ids that restart at 1 on every connection. Sent entries wait in
 * `sent` until `claim` takes them by the id of their reply.
 */
export class Outbox<Entry> {
  private queue: Entry[] = [];
  private readonly sent = new Map<number, Entry>();
  private send: ((text: string) => void) | null = null;
  private nextId = 1;
  private drainTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly pacer: SendPacer, private readonly codec: OutboxCodec<Entry>) {}

  /** True while a connection is attached. */
  get attached(): boolean {
    return this.send !== null;
  }

  /** Entries not sent yet, in order. */
  get queued(): readonly Entry[] {
    return this.queue;
  }

  /** Attaches a connection: ids restart at 1, and `first` is sent before the entries already queued. */
  attach(send: (text: string) => void, first: Entry[]): void {
    this.send = send;
    this.nextId = 1;
    this.queue = [...first, ...this.queue];
    this.drain();
  }

  /** Detaches the connection and returns the entries sent on it that got no reply. */
  detach(): Entry[] {
    this.send = null;
    clearTimeout(this.drainTimer);
    const unanswered = [...this.sent.values()];
    this.sent.clear();
    return unanswered;
  }

  /** Queues an entry after the others. */
  push(entry: Entry): void {
    this.queue.push(entry);
    this.drain();
  }

  /** Queues an entry before the others, such as an `auth` frame. */
  pushFront(entry: Entry): void {
    this.queue.unshift(entry);
    this.drain();
  }

  /** Keeps only the queued entries for which `keep` returns true. */
  filterQueued(keep: (entry: Entry) => boolean): void {
    this.queue = this.queue.filter(keep);
  }

  /** Removes an entry, queued or sent, so a late reply to it is ignored. */
  forget(entry: Entry): void {
    this.filterQueued((queued) => queued !== entry);
    for (const [id, sent] of this.sent) {
      if (sent === entry) {
        this.sent.delete(id);
      }
    }
  }

  /** Removes and returns the sent entry with this id, or undefined when there is none. */
  claim(id: number): Entry | undefined {
    const entry = this.sent.get(id);
    this.sent.delete(id);
    return entry;
  }

  /** Sends queued entries while the pacer allows, and schedules itself for the rest. */
  private drain(): void {
    clearTimeout(this.drainTimer);
    while (this.send && this.queue.length > 0) {
      const waitMs = this.pacer.take();
      if (waitMs > 0) {
        this.drainTimer = setTimeout(() => this.drain(), waitMs);
        return;
      }

      const entry = this.queue.shift()!;
      if (!this.codec.tracked(entry)) {
        this.send(this.codec.serialise(entry, null));
        continue;
      }
      const id = this.nextId;
      this.nextId += 1;
      this.sent.set(id, entry);
      this.send(this.codec.serialise(entry, id));
      this.codec.onSent?.(entry);
    }
  }
}
