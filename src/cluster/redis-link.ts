import { setTimeout as delay } from 'node:timers/promises';

import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';

/** Minimum wait before the first reconnection attempt, in milliseconds. */
const minReconnectDelayMs = 100;
/** Maximum wait between two reconnection attempts, in milliseconds. */
const maxReconnectDelayMs = 5_000;
/** Time allowed to open the TCP (and TLS) connection, in milliseconds. */
const connectTimeoutMs = 10_000;
/** Time `close` waits for commands in flight and QUIT before it drops the connections, in milliseconds. */
const closeTimeoutMs = 2_000;

/** Whether both Redis connections are usable: `connecting` only until the first attempt ends. */
export type RedisLinkState = 'connecting' | 'available' | 'unavailable';

/** Settings of the Redis link. */
export interface RedisLinkOptions {
  /** `redis://` or `rediss://` URL, possibly with a password; it never reaches a log. */
  url: string;
  logger: Logger;
}

/**
 * Returns the wait before reconnection attempt `attempt` (1, 2, …) in milliseconds: exponential from
 * 100 ms up to 5 s, with the upper half jittered so that nodes do not reconnect in lockstep.
 */
export function reconnectDelayMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxReconnectDelayMs, minReconnectDelayMs * 2 ** Math.min(Math.max(attempt - 1, 0), 16));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * Describes a Redis URL for logs: scheme, host, port and database number. The user name, the password
 * and the query string are left out, because any of them may carry a credential.
 */
export function describeRedisUrl(url: string): string {
  const parsed = new URL(url);
  const database = parsed.pathname.length > 1 ? parsed.pathname : '';
  return `${parsed.protocol}//${parsed.host}${database}`;
}

/**
 * Holds the two Redis connections of a node: `commands` for PUBLISH and every other command, and a
 * subscriber, because a connection in subscribe mode cannot run other commands. ioredis reconnects
 * both with backoff for as long as the node runs. The link is available while both are connected and
 * the subscriber has subscribed to every registered channel. It logs `redis.unavailable` once when
 * an outage starts and `redis.restored` when it ends.
 *
 * Commands are never queued while disconnected, and a command in flight when the connection drops
 * fails at once, so that callers can count what did not reach Redis instead of sending it late.
 */
export class RedisLink {
  /** Connection for every command except SUBSCRIBE. */
  readonly commands: Redis;
  private readonly subscriber: Redis;
  private readonly target: string;
  private readonly handlers = new Map<string, (payload: Buffer) => void>();
  private readonly listeners = new Set<(available: boolean) => void>();
  private readonly firstAttempt: Promise<void>;
  private settleFirstAttempt!: () => void;
  private subscribed = false;
  private current: RedisLinkState = 'connecting';
  private unavailableSinceMs = Date.now();
  private lastError: unknown = null;
  private closing = false;

  constructor(private readonly options: RedisLinkOptions) {
    this.target = describeRedisUrl(options.url);
    this.firstAttempt = new Promise((resolve) => { this.settleFirstAttempt = resolve; });
    // connectTimeout ends at the TCP (or TLS) connection, so a server that accepts it and then never
    // replies would otherwise keep the node from starting.
    const firstAttemptTimer = setTimeout(() => {
      this.lastError = new Error(`Redis did not become ready within ${connectTimeoutMs} ms`);
      this.fail();
    }, connectTimeoutMs);
    firstAttemptTimer.unref();
    void this.firstAttempt.then(() => clearTimeout(firstAttemptTimer));

    const connectionOptions: RedisOptions = {
      retryStrategy: (attempt) => reconnectDelayMs(attempt),
      connectTimeout: connectTimeoutMs,
      enableOfflineQueue: false,
      // With 0, ioredis rejects the commands in flight when a connection drops, instead of sending
      // them again after a reconnection or leaving their promises pending.
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // The link subscribes again itself after each reconnection, so that it can tell when that finished.
      autoResubscribe: false,
    };
    this.commands = new Redis(options.url, connectionOptions);
    this.subscriber = new Redis(options.url, connectionOptions);

    for (const connection of [this.commands, this.subscriber]) {
      connection.on('error', (error: unknown) => { this.lastError = error; });
    }
    this.commands.on('ready', () => this.update());
    this.commands.on('close', () => this.fail());
    this.commands.on('reconnecting', (delayMs: number) => {
      options.logger.debug({ event: 'redis.reconnecting', redis: this.target, delay_ms: delayMs }, 'reconnecting to Redis');
    });
    this.subscriber.on('ready', () => void this.subscribeAll());
    this.subscriber.on('close', () => {
      this.subscribed = false;
      this.fail();
    });
    this.subscriber.on('messageBuffer', (channel: Buffer, payload: Buffer) => this.dispatch(channel.toString('utf8'), payload));
  }

  /** True while both connections are up and subscribed, and `close` has not been called. */
  get available(): boolean {
    return !this.closing && this.current === 'available';
  }

  /** Returns the link's state and the time since which it has not been available (epoch milliseconds), for `/readyz`. */
  status(): { state: RedisLinkState; unavailableSinceMs: number | null } {
    return { state: this.current, unavailableSinceMs: this.current === 'available' ? null : this.unavailableSinceMs };
  }

  /** Calls `handler` with the raw payload of every message on `channel`. Register channels before `waitForFirstAttempt`. */
  onMessage(channel: string, handler: (payload: Buffer) => void): void {
    this.handlers.set(channel, handler);
    if (this.subscriber.status === 'ready') {
      void this.subscribeAll();
    }
  }

  /** Calls `listener` with true when the link becomes available and with false when an outage starts. */
  onAvailabilityChange(listener: (available: boolean) => void): void {
    this.listeners.add(listener);
  }

  /** Resolves once the first connection attempt has succeeded or failed; either way the node goes on. */
  waitForFirstAttempt(): Promise<void> {
    return this.firstAttempt;
  }

  /**
   * Closes both connections and stops reconnecting. Replies to commands in flight are awaited for up
   * to 2 s, so that a Redis that stopped responding cannot hold up a shutdown.
   */
  async close(): Promise<void> {
    this.closing = true;
    this.settleFirstAttempt();
    // QUIT fails on a connection that is down; disconnect() then stops its reconnection timer.
    const quit = Promise.allSettled([this.commands.quit(), this.subscriber.quit()]);
    await Promise.race([quit, delay(closeTimeoutMs, undefined, { ref: false })]);
    this.commands.disconnect();
    this.subscriber.disconnect();
  }

  private async subscribeAll(): Promise<void> {
    const channels = [...this.handlers.keys()];
    if (channels.length === 0) {
      return;
    }

    try {
      await this.subscriber.subscribe(...channels);
      this.subscribed = true;
      this.update();
    } catch (error) {
      // The connection dropped, or Redis refused SUBSCRIBE (e.g. an ACL rule). The link stays
      // unavailable, and the next 'ready' event subscribes again.
      this.lastError = error;
      this.fail();
    }
  }

  private dispatch(channel: string, payload: Buffer): void {
    // ioredis emits messages from the socket's 'data' event, so an exception here would end the process.
    try {
      this.handlers.get(channel)?.(payload);
    } catch (error) {
      this.options.logger.error({ event: 'redis.message_failed', channel, err: error }, 'handling a message from Redis failed with an internal error');
    }
  }

  private update(): void {
    if (this.closing || this.current === 'available' || !this.subscribed || this.commands.status !== 'ready') {
      return;
    }

    const previous = this.current;
    this.current = 'available';
    this.lastError = null;
    if (previous === 'connecting') {
      this.options.logger.info({ event: 'redis.connected', redis: this.target }, 'connected to Redis; messages, revocations and limits are shared with other nodes');
    } else {
      this.options.logger.info({ event: 'redis.restored', redis: this.target, unavailable_ms: Date.now() - this.unavailableSinceMs }, 'Redis is available again; cross-node delivery resumes');
    }
    this.settleFirstAttempt();
    this.notify(true);
  }

  private fail(): void {
    if (this.closing || this.current === 'unavailable') {
      return;
    }

    if (this.current === 'available') {
      this.unavailableSinceMs = Date.now();
    }
    this.current = 'unavailable';
    this.options.logger.warn({ event: 'redis.unavailable', redis: this.target, err: this.lastError ?? undefined }, 'Redis is unavailable; serving local connections only and retrying with backoff');
    this.settleFirstAttempt();
    this.notify(false);
  }

  private notify(available: boolean): void {
    for (const listener of this.listeners) {
      listener(available);
    }
  }
}
