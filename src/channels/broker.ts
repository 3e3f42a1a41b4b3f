import { QlobberDedup } from 'qlobber';

import { BroadcastFrame } from './broadcast-frame.ts';
import { anyRest, anySegment, maxChannelSegments } from './names.ts';

/** Publisher of a message: the token's client and subject, or the operator for CLI and embedded calls. */
export interface Publisher {
  client_id: string;
  sub: string;
}

/** A message on its way to subscribers. */
export interface ChannelMessage {
  channel: string;
  data: unknown;
  publisher: Publisher;
  /** Server time of publication, epoch milliseconds. */
  timestamp: number;
}

/** Anything that receives messages, usually a connection. */
export interface Subscriber {
  /** `frame` is the `message` frame, built once per message for every subscriber. */
  deliver(frame: BroadcastFrame, message: ChannelMessage): void;
}

/** Serialises the `message` frame that subscribers receive. */
export function messageFrame(message: ChannelMessage): string {
  return JSON.stringify({
    type: 'message',
    channel: message.channel,
    data: message.data,
    publisher: message.publisher,
    timestamp: message.timestamp,
  });
}

/**
 * Routes published messages to the subscribers of matching filters on this node. Matching uses a
 * topic trie (qlobber), so a publish costs the length of the channel name, not the number of
 * subscriptions. Each message is serialised once; a subscriber's `deliver` only queues it, so a
 * slow subscriber never delays the others.
 */
export class ChannelBroker {
  private readonly matcher = new QlobberDedup<Subscriber>({
    separator: '/',
    wildcard_one: anySegment,
    wildcard_some: anyRest,
    max_words: maxChannelSegments,
    max_wildcard_somes: 1,
  });
  private readonly observers = new Set<(message: ChannelMessage) => void>();

  /** Adds a subscription; `filter` must already be a valid channel filter. */
  subscribe(filter: string, subscriber: Subscriber): void {
    this.matcher.add(filter, subscriber);
  }

  unsubscribe(filter: string, subscriber: Subscriber): void {
    this.matcher.remove(filter, subscriber);
  }

  /** Calls `observer` for every message published on this node, after delivery; returns a function that stops it. */
  observe(observer: (message: ChannelMessage) => void): () => void {
    this.observers.add(observer);
    return () => this.observers.delete(observer);
  }

  /**
   * Delivers `message` to every matching subscriber on this node, then passes it to the observers
   * (which forward it to other nodes when Redis is configured). Returns the number of local subscribers.
   */
  publish(message: ChannelMessage): number {
    const delivered = this.deliverLocally(message);
    for (const observer of this.observers) {
      observer(message);
    }
    return delivered;
  }

  /**
   * Delivers a message that another node published to the matching subscribers on this node and
   * returns how many there were. Observers are not called, so the message is not sent back to the
   * cluster. The caller must have checked the channel name and the data.
   */
  deliverLocally(message: ChannelMessage): number {
    const subscribers = this.matcher.match(message.channel);
    if (subscribers.size > 0) {
      // Encoded once here, so a send to each socket does not encode the same text again.
      const frame = new BroadcastFrame(Buffer.from(messageFrame(message)));
      for (const subscriber of subscribers) {
        subscriber.deliver(frame, message);
      }
    }
    return subscribers.size;
  }
}
