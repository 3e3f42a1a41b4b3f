import crypto from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';

import type { Logger } from 'pino';
import { Agent, fetch } from 'undici';

import { Backoff } from '../client/backoff.ts';
import type { Options } from '../config/options.ts';
import type { ChannelMessage } from './broker.ts';
import { loadWebhookSecret, signWebhookBody, webhookHeaders } from './webhook-signature.ts';

/** Settings of a `WebhookDispatcher`; every limit has a default. */
export interface WebhookDispatcherOptions {
  /** Receiver URL, already validated by the options module. */
  url: string;
  /** HMAC key, used as UTF-8 text. */
  secret: string;
  logger: Logger;
  /** Attempts per message, the first included. Default 5. */
  maxAttempts?: number;
  /** Ceiling of the first retry delay in milliseconds, doubled for each later retry. Default 1000. */
  retryBaseMs?: number;
  /** Largest retry delay in milliseconds, also the cap on a receiver's `Retry-After`. Default 30000. */
  retryCapMs?: number;
  /** Messages waiting to be sent before the oldest is dropped. Default 10000. */
  maxQueuedMessages?: number;
  /** Serialised bytes waiting to be sent before the oldest message is dropped. Default 64 MiB. */
  maxQueuedBytes?: number;
  /** Messages being delivered at the same time, retry delays included. Default 4. */
  concurrency?: number;
  /** Time one attempt may take until the response headers arrive, in milliseconds. Default 10000. */
  attemptTimeoutMs?: number;
}

interface Delivery {
  id: string;
  channel: string;
  body: string;
  bytes: number;
}

type AttemptOutcome =
  | { result: 'delivered'; status: number }
  | { result: 'retry'; status?: number; error?: string; retryAfterMs?: number }
  | { result: 'rejected'; status: number }
  | { result: 'aborted' };

// A burst of drops while the receiver is down would otherwise write one line per message.
const dropLogIntervalMs = 10_000;

/** Creates the dispatcher when `webhookUrl` is set, and returns null otherwise. */
export function createWebhookDispatcher(options: Readonly<Options>, logger: Logger): WebhookDispatcher | null {
  if (!options.webhookUrl) {
    return null;
  }

  const dispatcher = new WebhookDispatcher({ url: options.webhookUrl, secret: loadWebhookSecret(options, logger), logger });
  const url = new URL(options.webhookUrl);
  // The query string may carry a receiver's own credential, so only origin and path are logged.
  logger.info({ event: 'webhook.enabled', url: `${url.origin}${url.pathname}` }, 'messages published over WebSocket are sent to the webhook');
  return dispatcher;
}

/** A first-in, first-out queue with amortised constant-time removal from the front. */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.length === 0) {
      return undefined;
    }

    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head += 1;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

/**
 * Sends published messages to the webhook receiver as signed JSON POST requests. A network error, a
 * timeout, 429 or 5xx is retried with full-jitter exponential backoff, up to `maxAttempts` in all,
 * and any other status ends the message. Messages wait in a bounded queue that drops the oldest when
 * full. A receiver can get a message twice, after a timed-out attempt that it did process, and
 * messages still queued or retrying at `stop()` are lost.
 */
export class WebhookDispatcher {
  private readonly url: string;
  private readonly secret: string;
  private readonly logger: Logger;
  private readonly maxAttempts: number;
  private readonly retryBaseMs: number;
  private readonly retryCapMs: number;
  private readonly maxQueuedMessages: number;
  private readonly maxQueuedBytes: number;
  private readonly concurrency: number;
  private readonly attemptTimeoutMs: number;

  private readonly queue = new Fifo<Delivery>();
  private queuedBytes = 0;
  private active = 0;
  private stopped = false;
  private abandoned = 0;
  private droppedSinceLog = 0;
  private lastDropLogAt = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly stopController = new AbortController();
  private readonly agent: Agent;

  constructor(options: WebhookDispatcherOptions) {
    this.url = options.url;
    this.secret = options.secret;
    this.logger = options.logger;
    this.maxAttempts = options.maxAttempts ?? 5;
    this.retryBaseMs = options.retryBaseMs ?? 1000;
    this.retryCapMs = options.retryCapMs ?? 30_000;
    this.maxQueuedMessages = options.maxQueuedMessages ?? 10_000;
    this.maxQueuedBytes = options.maxQueuedBytes ?? 64 * 1024 * 1024;
    this.concurrency = options.concurrency ?? 4;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 10_000;
    // A dedicated pool, so stop() closes the receiver connections without touching other fetch users.
    this.agent = new Agent({ connections: this.concurrency });
  }

  /** Messages waiting in the queue, not counting those being delivered. */
  get queued(): number {
    return this.queue.length;
  }

  /** Messages being delivered, retry delays included. */
  get inFlight(): number {
    return this.active;
  }

  /**
   * Queues one message for delivery and returns at once. It runs inside the publishing connection's
   * message handler, so it catches and logs its own errors instead of throwing. After `stop()` it
   * does nothing.
   */
  readonly enqueue = (message: ChannelMessage): void => {
    if (this.stopped) {
      return;
    }

    try {
      const body = JSON.stringify({ channel: message.channel, data: message.data, publisher: message.publisher, timestamp: message.timestamp });
      const delivery: Delivery = { id: crypto.randomUUID(), channel: message.channel, body, bytes: Buffer.byteLength(body) };
      this.queue.push(delivery);
      this.queuedBytes += delivery.bytes;
      this.dropOverflow();
      this.pump();
    } catch (error) {
      this.logger.error({ event: 'webhook.enqueue_failed', channel: message.channel, err: error }, 'could not queue a message for the webhook');
    }
  };

  /** Resolves once the queue is empty and no delivery is running. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.active === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops queued messages, aborts running attempts and retry delays, and closes the connection pool. */
  async stop(): Promise<void> {
    if (this.stopped) {
      return this.idle();
    }

    this.stopped = true;
    const queuedAtStop = this.queue.length;
    this.queue.clear();
    this.queuedBytes = 0;
    this.stopController.abort();
    await this.idle();
    await this.agent.destroy();

    this.flushDropLog(true);
    this.logger.info({ event: 'webhook.stopped', undelivered: queuedAtStop + this.abandoned }, 'webhook dispatcher stopped');
  }

  private dropOverflow(): void {
    // One message larger than the byte bound is still sent; the payload limit keeps it far smaller.
    while (this.queue.length > this.maxQueuedMessages || (this.queuedBytes > this.maxQueuedBytes && this.queue.length > 1)) {
      const dropped = this.queue.shift()!;
      this.queuedBytes -= dropped.bytes;
      this.droppedSinceLog += 1;
    }
    this.flushDropLog(false);
  }

  private flushDropLog(force: boolean): void {
    const now = Date.now();
    if (this.droppedSinceLog === 0 || (!force && now - this.lastDropLogAt < dropLogIntervalMs)) {
      return;
    }

    this.logger.warn({
      event: 'webhook.dropped',
      dropped: this.droppedSinceLog,
      max_queued_messages: this.maxQueuedMessages,
      max_queued_bytes: this.maxQueuedBytes,
    }, 'webhook queue full; dropped the oldest messages');
    this.droppedSinceLog = 0;
    this.lastDropLogAt = now;
  }

  private pump(): void {
    while (!this.stopped && this.active < this.concurrency && this.queue.length > 0) {
      const delivery = this.queue.shift()!;
      this.queuedBytes -= delivery.bytes;
      this.active += 1;
      this.deliver(delivery)
        .catch((error: unknown) => {
          this.logger.error({ event: 'webhook.failed', delivery_id: delivery.id, channel: delivery.channel, err: error }, 'webhook delivery failed with an internal error');
        })
        .finally(() => {
          this.active -= 1;
          this.pump();
          this.resolveIdleWaiters();
        });
    }
  }

  private resolveIdleWaiters(): void {
    if (this.queue.length > 0 || this.active > 0) {
      return;
    }

    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    waiters.forEach((resolve) => resolve());
  }

  private async deliver(delivery: Delivery): Promise<void> {
    const backoff = new Backoff({ baseMs: this.retryBaseMs, capMs: this.retryCapMs });
    const context = { delivery_id: delivery.id, channel: delivery.channel };

    for (let attempt = 1; attempt <= this.maxAttempts; attempt += 1) {
      const outcome = await this.attempt(delivery);
      if (outcome.result === 'aborted') {
        this.abandoned += 1;
        return;
      }
      if (outcome.result === 'delivered') {
        this.logger.info({ event: 'webhook.delivered', ...context, status: outcome.status, attempts: attempt }, 'webhook delivered');
        return;
      }
      if (outcome.result === 'rejected') {
        this.logger.error({ event: 'webhook.failed', ...context, status: outcome.status, attempts: attempt, retry: false }, 'webhook receiver rejected the message; not retrying');
        return;
      }
      if (attempt === this.maxAttempts) {
        this.logger.error({ event: 'webhook.failed', ...context, status: outcome.status, error: outcome.error, attempts: attempt, retry: false }, 'webhook delivery failed after the last attempt');
        return;
      }

      const delayMs = Math.min(this.retryCapMs, Math.max(backoff.next(), outcome.retryAfterMs ?? 0));
      this.logger.warn({ event: 'webhook.retry_scheduled', ...context, status: outcome.status, error: outcome.error, attempt, delay_ms: delayMs }, 'webhook attempt failed; retrying');
      try {
        await delay(delayMs, undefined, { signal: this.stopController.signal });
      } catch {
        this.abandoned += 1;
        return;
      }
    }
  }

  private async attempt(delivery: Delivery): Promise<AttemptOutcome> {
    const timestamp = Math.floor(Date.now() / 1000);
    // Not AbortSignal.timeout: on Node 20, a garbage collection can collect that signal while the
    // request waits, and the attempt then never times out. The timer below keeps its controller alive.
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new DOMException('The webhook attempt timed out.', 'TimeoutError')), this.attemptTimeoutMs);
    const signal = AbortSignal.any([this.stopController.signal, timeout.signal]);

    let status: number;
    let retryAfter: string | null;
    try {
      const response = await fetch(this.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'portcullis-webhook/1',
          [webhookHeaders.delivery]: delivery.id,
          [webhookHeaders.timestamp]: String(timestamp),
          [webhookHeaders.signature]: signWebhookBody(this.secret, timestamp, delivery.body),
        },
        body: delivery.body,
        signal,
        dispatcher: this.agent,
        // A redirect could carry the signed body to another host, so it counts as a rejection.
        redirect: 'manual',
      });
      status = response.status;
      retryAfter = response.headers.get('retry-after');
      // The response body is not used; cancelling it frees the connection for the next attempt.
      await response.body?.cancel().catch(() => undefined);
    } catch (error) {
      if (this.stopped) {
        return { result: 'aborted' };
      }
      return { result: 'retry', error: describeFetchError(error) };
    } finally {
      clearTimeout(timer);
    }

    if (status >= 200 && status < 300) {
      return { result: 'delivered', status };
    }
    if (status === 429 || status >= 500) {
      return { result: 'retry', status, retryAfterMs: parseRetryAfter(retryAfter) };
    }
    return { result: 'rejected', status };
  }
}

/** Reads `Retry-After` (RFC 9110 section 10.2.3) as delay-seconds or an HTTP date; undefined when absent or invalid. */
function parseRetryAfter(value: string | null): number | undefined {
  if (!value) {
    return undefined;
  }
  if (/^\d+$/.test(value.trim())) {
    return Number(value.trim()) * 1000;
  }

  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

// undici wraps socket errors in `TypeError: fetch failed` with the real code in `cause`. Messages
// are left out because they can contain the receiver URL with its query string.
function describeFetchError(error: unknown): string {
  if (!(error instanceof Error)) {
    return 'unknown';
  }
  const cause = (error as Error & { cause?: { code?: unknown; name?: unknown } }).cause;
  if (typeof cause?.code === 'string') {
    return cause.code;
  }
  return error.name === 'TimeoutError' || typeof cause?.name !== 'string' ? error.name : cause.name;
}
