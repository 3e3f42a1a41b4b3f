// Browser-safe: no Node imports, because the browser client bundles this file. The channel requests
// of one client across all of its connections: correlation of replies, timeouts, pacing, and the
// subscriptions that every new connection restores.

import { filterCovers } from '../channels/names.ts';
import {
  channelError,
  checkChannelFilter,
  checkChannelName,
  frameBytes,
  publishFrame,
  readChannelFrame,
  SendPacer,
  serialiseData,
  type ChannelMessage,
  type ServerChannelFrame,
} from './channel-frames.ts';
import {
  defaultMaxMessagesPerSecond,
  defaultMaxOutgoingFrameBytes,
  defaultRequestTimeoutMs,
  type ChannelOptions,
} from './channel-options.ts';
import { Outbox } from './channel-outbox.ts';
import { outgoingCodec, replyTypeOf, type Outgoing, type Request, type Subscription, type Timer, type Waiter } from './channel-outgoing.ts';
import type { PortcullisClientError } from './policy.ts';

export type { ChannelMessage, Publisher } from './channel-frames.ts';
export type { ChannelOptions, ChannelRequestCode, SubscribedEvent, SubscriptionEndedEvent } from './channel-options.ts';

/** Wait before a subscribe that the server rejected with `rate_limited` is sent again, in milliseconds. */
const rateLimitRetryMs = 1000;

/**
 * The channel side of a client. The SDK calls `connected` after each welcome frame, `disconnected`
 * when the socket ends and `stop` when it stops. The application calls `subscribe`, `unsubscribe`
 * and `publish`. Requests made without an open connection wait in the outbox for the next one.
 */
export class ChannelRequests {
  private readonly options: ChannelOptions;
  private readonly callApp: (callback: () => void) => void;
  private readonly outbox: Outbox<Outgoing>;
  private readonly subscriptionsByChannel = new Map<string, Subscription>();
  private stopped = false;
  /** Counts connections, so a retry scheduled on one connection does nothing on the next. */
  private connectionCount = 0;

  /** `callApp` runs each application callback, so a callback that throws cannot break the SDK. */
  constructor(options: ChannelOptions, callApp: (callback: () => void) => void) {
    this.options = options;
    this.callApp = callApp;
    this.outbox = new Outbox(new SendPacer(options.maxMessagesPerSecond ?? defaultMaxMessagesPerSecond), outgoingCodec);
  }

  /** Channels and filters subscribed to, confirmed or still waiting for the server. */
  get subscriptions(): string[] {
    return [...this.subscriptionsByChannel.keys()];
  }

  /** Starts a connection: ids restart at 1, every subscription is sent again, then the waiting requests. */
  connected(send: (text: string) => void): void {
    this.connectionCount += 1;
    const restores: Outgoing[] = [];
    for (const subscription of this.subscriptionsByChannel.values()) {
      subscription.status = 'queued';
      restores.push({ kind: 'subscribe', subscription });
    }
    this.outbox.attach(send, restores);
  }

  /**
   * Ends the current connection. Publishes it carried reject with `connection_closed`, because they
   * may or may not have reached the server, and are not sent again. Unsubscribes resolve, because the
   * server drops every subscription of a closed connection. Subscriptions wait for the next connection.
   */
  disconnected(): void {
    for (const entry of this.outbox.detach()) {
      if (entry.kind === 'request' && entry.request.type === 'publish') {
        this.settle(entry.request.waiter, channelError('connection_closed', 'publish', entry.request.channel, 'the connection closed before the server replied.'));
      } else if (entry.kind === 'request') {
        this.settle(entry.request.waiter, null);
      }
    }

    // Queued publishes wait for the next connection, and `connected` queues the subscribes again.
    for (const entry of this.outbox.queued) {
      if (entry.kind === 'request' && entry.request.type === 'unsubscribe') {
        this.settle(entry.request.waiter, null);
      }
    }
    this.outbox.filterQueued((entry) => entry.kind === 'request' && entry.request.type === 'publish');
    this.subscriptionsByChannel.forEach((subscription) => {
      subscription.status = 'idle';
    });
  }

  /**
   * Stops for good, or until `resume`: every waiting request rejects with `not_connected`, and so do
   * later ones. Subscriptions that a connection confirmed are kept for `resume` unless `forget` is set.
   */
  stop(forget: boolean): void {
    this.disconnected();
    this.stopped = true;
    for (const entry of this.outbox.queued) {
      if (entry.kind === 'request') {
        this.settle(entry.request.waiter, channelError('not_connected', entry.request.type, entry.request.channel, 'the client stopped.'));
      }
    }
    this.outbox.filterQueued(() => false);

    for (const subscription of [...this.subscriptionsByChannel.values()]) {
      this.rejectWaiters(subscription, channelError('not_connected', 'subscribe', subscription.channel, 'the client stopped.'));
      if (forget || !subscription.everConfirmed) {
        this.subscriptionsByChannel.delete(subscription.channel);
      }
    }
  }

  /** Accepts requests again after `stop`, for a client that connects anew. */
  resume(): void {
    this.stopped = false;
  }

  /** Sends a frame outside the channel protocol, such as `auth`, before any waiting request. */
  sendControl(text: string): void {
    this.outbox.pushFront({ kind: 'control', text });
  }

  /**
   * Subscribes to a channel or filter and resolves when the server confirms. `listener` receives the
   * messages that match it. Subscribing again to the same filter replaces the listener.
   */
  subscribe(channel: string, listener?: (message: ChannelMessage) => void): Promise<void> {
    const invalid = this.stopped ? channelError('not_connected', 'subscribe', channel, 'the client is stopped.') : checkChannelFilter('subscribe', channel);
    if (invalid) {
      return Promise.reject(invalid);
    }

    let subscription = this.subscriptionsByChannel.get(channel);
    if (!subscription) {
      subscription = { channel, segments: channel.split('/'), listener, status: 'idle', everConfirmed: false, waiters: new Set() };
      this.subscriptionsByChannel.set(channel, subscription);
    }
    subscription.listener = listener ?? subscription.listener;
    if (subscription.status === 'confirmed') {
      return Promise.resolve();
    }

    const confirmed = this.waitForSubscription(subscription);
    if (this.outbox.attached && subscription.status === 'idle') {
      subscription.status = 'queued';
      this.outbox.push({ kind: 'subscribe', subscription });
    }
    return confirmed;
  }

  /**
   * Removes a subscription at once, so its listener gets no further message, and resolves when the
   * server confirms. Without a connection there is nothing to undo, so it resolves at once.
   */
  unsubscribe(channel: string): Promise<void> {
    const invalid = checkChannelFilter('unsubscribe', channel);
    if (invalid) {
      return Promise.reject(invalid);
    }

    const subscription = this.subscriptionsByChannel.get(channel);
    if (!subscription) {
      return Promise.resolve();
    }
    this.subscriptionsByChannel.delete(channel);
    this.rejectWaiters(subscription, channelError('unsubscribed', 'subscribe', channel, 'unsubscribe was called before the server confirmed.'));
    this.outbox.filterQueued((entry) => !(entry.kind === 'subscribe' && entry.subscription === subscription));
    if (!this.outbox.attached || subscription.status === 'idle' || subscription.status === 'queued') {
      return Promise.resolve();
    }
    return this.request({ type: 'unsubscribe', channel });
  }

  /** Publishes a JSON value on a channel and resolves when the server confirms that it passed it to the subscribers. */
  publish(channel: string, data: unknown): Promise<void> {
    const invalid = this.stopped ? channelError('not_connected', 'publish', channel, 'the client is stopped.') : checkChannelName(channel);
    if (invalid) {
      return Promise.reject(invalid);
    }

    const dataJson = serialiseData(data);
    if (dataJson === null) {
      return Promise.reject(channelError('invalid_message', 'publish', channel, 'data must be a JSON value: not undefined, a function, a BigInt or a cyclic object.'));
    }
    // The server closes the connection on a frame over its limit, so the check adds 20 bytes for the largest id.
    const maxBytes = this.options.maxOutgoingFrameBytes ?? defaultMaxOutgoingFrameBytes;
    if (frameBytes(publishFrame(0, channel, dataJson)) + 20 > maxBytes) {
      return Promise.reject(channelError('payload_too_large', 'publish', channel, `the frame would exceed ${maxBytes} bytes.`));
    }
    return this.request({ type: 'publish', channel, dataJson });
  }

  /** Handles a parsed frame of the channel protocol and returns true, or returns false for any other frame. */
  receive(frame: Record<string, unknown>): boolean {
    const parsed = readChannelFrame(frame);
    if (!parsed) {
      return false;
    }

    switch (parsed.type) {
      case 'message':
        this.deliver(parsed.message);
        break;
      case 'subscription_ended':
        this.end(parsed.channel, parsed.reason);
        break;
      case 'error':
        this.rejected(parsed);
        break;
      default:
        this.replied(parsed);
    }
    return true;
  }

  private request(request: Omit<Request, 'waiter'>): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined as unknown as Timer };
      const entry: Outgoing = { kind: 'request', request: { ...request, waiter } };
      waiter.timer = setTimeout(() => {
        this.outbox.forget(entry);
        reject(channelError('request_timeout', request.type, request.channel, `no reply within ${this.timeoutMs} ms.`));
      }, this.timeoutMs);
      this.outbox.push(entry);
    });
  }

  private waitForSubscription(subscription: Subscription): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined as unknown as Timer };
      waiter.timer = setTimeout(() => {
        subscription.waiters.delete(waiter);
        reject(channelError('request_timeout', 'subscribe', subscription.channel, `no reply within ${this.timeoutMs} ms.`));
        this.abandon(subscription);
      }, this.timeoutMs);
      subscription.waiters.add(waiter);
    });
  }

  /**
   * Drops a subscription whose every subscribe call timed out before any connection confirmed it,
   * so a rejected subscribe leaves no subscription behind. A confirmed one is kept.
   */
  private abandon(subscription: Subscription): void {
    if (subscription.waiters.size > 0 || subscription.everConfirmed || this.subscriptionsByChannel.get(subscription.channel) !== subscription) {
      return;
    }

    this.subscriptionsByChannel.delete(subscription.channel);
    this.outbox.filterQueued((entry) => !(entry.kind === 'subscribe' && entry.subscription === subscription));
    // The server may still confirm the subscribe in flight, so an unsubscribe follows it.
    if (subscription.status === 'sent') {
      this.outbox.push({ kind: 'request', request: { type: 'unsubscribe', channel: subscription.channel, waiter: null } });
    }
  }

  private replied(reply: Extract<ServerChannelFrame, { id: number; channel: string }>): void {
    const entry = this.outbox.claim(reply.id);
    if (!entry || entry.kind === 'control' || reply.type !== replyTypeOf(entry)) {
      return;
    }

    if (entry.kind === 'request') {
      this.settle(entry.request.waiter, null);
      return;
    }
    const { subscription } = entry;
    // An unsubscribe or a timeout since then replaced or removed it.
    if (this.subscriptionsByChannel.get(subscription.channel) !== subscription) {
      return;
    }
    const restored = subscription.everConfirmed;
    subscription.status = 'confirmed';
    subscription.everConfirmed = true;
    for (const waiter of subscription.waiters) {
      this.settle(waiter, null);
    }
    subscription.waiters.clear();
    this.callApp(() => this.options.onSubscribed?.({ channel: subscription.channel, restored }));
  }

  private rejected(frame: Extract<ServerChannelFrame, { type: 'error' }>): void {
    const entry = frame.id === null ? undefined : this.outbox.claim(frame.id);
    if (!entry || entry.kind === 'control') {
      this.callApp(() => this.options.onError?.(channelError(frame.code, 'a request', null, frame.description)));
      return;
    }

    if (entry.kind === 'request') {
      this.settle(entry.request.waiter, channelError(frame.code, entry.request.type, entry.request.channel, frame.description));
      return;
    }
    const { subscription } = entry;
    if (this.subscriptionsByChannel.get(subscription.channel) !== subscription) {
      return;
    }
    // The server did not process the frame, so a restore after a reconnect must not lose the
    // subscription to a momentary limit. It is sent again once the server's bucket has refilled.
    if (frame.code === 'rate_limited' && this.outbox.attached) {
      this.retryLater(subscription);
      return;
    }
    this.subscriptionsByChannel.delete(subscription.channel);
    this.rejectWaiters(subscription, channelError(frame.code, 'subscribe', subscription.channel, frame.description));
    if (subscription.everConfirmed) {
      this.callApp(() => this.options.onSubscriptionEnded?.({ channel: subscription.channel, code: frame.code }));
    }
  }

  private retryLater(subscription: Subscription): void {
    const connection = this.connectionCount;
    subscription.status = 'idle';
    const timer = setTimeout(() => {
      const current = this.subscriptionsByChannel.get(subscription.channel) === subscription;
      if (connection !== this.connectionCount || !current || subscription.status !== 'idle' || !this.outbox.attached) {
        return;
      }
      subscription.status = 'queued';
      this.outbox.push({ kind: 'subscribe', subscription });
    }, rateLimitRetryMs);
    (timer as { unref?: () => void }).unref?.();
  }

  /** Removes a subscription the server ended, such as after an in-band refresh with fewer scopes. */
  private end(channel: string, reason: string): void {
    const subscription = this.subscriptionsByChannel.get(channel);
    if (!subscription) {
      return;
    }
    this.subscriptionsByChannel.delete(channel);
    this.rejectWaiters(subscription, channelError(reason, 'subscribe', channel, 'the server ended the subscription.'));
    this.callApp(() => this.options.onSubscriptionEnded?.({ channel, code: reason }));
  }

  private deliver(message: ChannelMessage): void {
    this.callApp(() => this.options.onMessage?.(message));
    const segments = message.channel.split('/');
    for (const subscription of this.subscriptionsByChannel.values()) {
      const { listener } = subscription;
      if (listener && filterCovers(subscription.segments, segments)) {
        this.callApp(() => listener(message));
      }
    }
  }

  private rejectWaiters(subscription: Subscription, error: PortcullisClientError): void {
    for (const waiter of subscription.waiters) {
      this.settle(waiter, error);
    }
    subscription.waiters.clear();
  }

  private settle(waiter: Waiter | null, error: PortcullisClientError | null): void {
    if (!waiter) {
      return;
    }
    clearTimeout(waiter.timer);
    if (error) {
      waiter.reject(error);
    } else {
      waiter.resolve();
    }
  }

  private get timeoutMs(): number {
    return this.options.requestTimeoutMs ?? defaultRequestTimeoutMs;
  }
}
