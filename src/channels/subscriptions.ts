import type { ErrorCode } from '../errors.ts';
import type { ChannelBroker, Subscriber } from './broker.ts';
import { parseChannelFilter } from './names.ts';
import { maySubscribe, type ChannelPermissions } from './permissions.ts';

/**
 * The subscriptions of one connection. Every filter is checked against the connection's current
 * permissions before it reaches the broker, and `restrictTo` drops those that new permissions no
 * longer allow.
 */
export class SubscriptionSet {
  private readonly filters = new Set<string>();

  constructor(
    private readonly broker: ChannelBroker,
    private readonly subscriber: Subscriber,
    private readonly maxSubscriptions: number,
  ) {}

  get size(): number {
    return this.filters.size;
  }

  /** Subscribes to `filter`, or returns the error code that refuses it. Subscribing twice is a no-op. */
  add(filter: string, permissions: ChannelPermissions): ErrorCode | null {
    const segments = parseChannelFilter(filter);
    if (!segments) {
      return 'invalid_channel';
    }
    if (!maySubscribe(permissions, segments)) {
      return 'forbidden';
    }
    if (this.filters.has(filter)) {
      return null;
    }
    if (this.filters.size >= this.maxSubscriptions) {
      return 'too_many_subscriptions';
    }

    this.filters.add(filter);
    this.broker.subscribe(filter, this.subscriber);
    return null;
  }

  /** Removes a subscription; removing one that does not exist is a no-op. */
  remove(filter: string): ErrorCode | null {
    if (!parseChannelFilter(filter)) {
      return 'invalid_channel';
    }
    if (this.filters.delete(filter)) {
      this.broker.unsubscribe(filter, this.subscriber);
    }
    return null;
  }

  /** Drops every subscription that `permissions` no longer allow and returns their filters. */
  restrictTo(permissions: ChannelPermissions): string[] {
    const dropped: string[] = [];
    for (const filter of this.filters) {
      const segments = parseChannelFilter(filter);
      if (segments && maySubscribe(permissions, segments)) {
        continue;
      }
      this.filters.delete(filter);
      this.broker.unsubscribe(filter, this.subscriber);
      dropped.push(filter);
    }
    return dropped;
  }

  /** Removes every subscription, when the connection closes. */
  clear(): void {
    for (const filter of this.filters) {
      this.broker.unsubscribe(filter, this.subscriber);
    }
    this.filters.clear();
  }
}
