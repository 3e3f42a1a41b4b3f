// Browser-safe: no Node imports, because the browser client bundles this file. The records that
// ChannelRequests keeps per subscription and request, and how the outbox serialises them.

import { publishFrame, requestFrame, type ChannelMessage } from './channel-frames.ts';
import type { OutboxCodec } from './channel-outbox.ts';
import type { PortcullisClientError } from './policy.ts';

/** A timer handle in Node and in browsers. */
export type Timer = ReturnType<typeof setTimeout>;

/** The settle functions of one application call, and the timer that bounds it. */
export interface Waiter {
  resolve: () => void;
  reject: (error: PortcullisClientError) => void;
  timer: Timer;
}

/** A filter the application subscribed to, kept across connections until `unsubscribe`. */
export interface Subscription {
  channel: string;
  segments: string[];
  listener: ((message: ChannelMessage) => void) | undefined;
  /** Progress of the subscribe on the current connection: `idle` before it is queued, then `queued`, `sent` and `confirmed`. */
  status: 'idle' | 'queued' | 'sent' | 'confirmed';
  /** True once any connection confirmed it, so losing it is reported. */
  everConfirmed: boolean;
  waiters: Set<Waiter>;
}

/** A publish or unsubscribe. `waiter` is null for the unsubscribe that cleans up after a timed-out subscribe. */
export interface Request {
  type: 'publish' | 'unsubscribe';
  channel: string;
  /** The serialised `data` of a publish. */
  dataJson?: string;
  waiter: Waiter | null;
}

/** A frame waiting in the outbox. Its id is assigned when it is sent. */
export type Outgoing =
  | { kind: 'subscribe'; subscription: Subscription }
  | { kind: 'request'; request: Request }
  | { kind: 'control'; text: string };

/** Returns the reply type that confirms an outgoing frame. */
export function replyTypeOf(entry: Exclude<Outgoing, { kind: 'control' }>): string {
  if (entry.kind === 'subscribe') {
    return 'subscribed';
  }
  return entry.request.type === 'publish' ? 'published' : 'unsubscribed';
}

/** Serialises outbox entries with the id assigned at sending, and marks subscribes as sent. */
export const outgoingCodec: OutboxCodec<Outgoing> = {
  serialise(entry, id) {
    if (entry.kind === 'control') {
      return entry.text;
    }
    if (entry.kind === 'subscribe') {
      return requestFrame('subscribe', id!, entry.subscription.channel);
    }
    const { request } = entry;
    return request.type === 'publish' ? publishFrame(id!, request.channel, request.dataJson!) : requestFrame('unsubscribe', id!, request.channel);
  },
  tracked: (entry) => entry.kind !== 'control',
  onSent(entry) {
    if (entry.kind === 'subscribe') {
      entry.subscription.status = 'sent';
    }
  },
};
