import crypto from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';

import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

import type { ConnectionOwner, ConnectionRegistry, ConnectionSlot } from '../gateway/registry.ts';
import type { ClusterKeys } from './keys.ts';
import type { RedisLink } from './redis-link.ts';
import { ThrottledWarning } from './throttled-warning.ts';

/** Default interval at which a node renews the slots of its live connections, in milliseconds. */
export const defaultRefreshIntervalMs = 10_000;
/** Default age after which a slot that no node renewed is free again, in milliseconds. */
export const defaultStaleAfterMs = 30_000;
/** Maximum number of slot ids in one refresh command, which keeps each command small. */
const refreshBatchSize = 500;
/** Time `close` waits for Redis to remove the node's slots, in milliseconds. */
const closeTimeoutMs = 2_000;

// The scripts read Redis's clock, so the nodes' clocks need not agree. Redis 5 and later replicate a
// script by its effects, which allows TIME before a write.
const readRedisTime = `local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)`;

// KEYS[1] owner's set, ARGV[1] slot id, ARGV[2] limit, ARGV[3] stale age in ms. Returns 1 when taken.
const reserveScript = `${readRedisTime}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`;

// KEYS[1] owner's set, ARGV[1] stale age in ms, ARGV[2..] slot ids. Adds the ids that are missing,
// e.g. after Redis restarted empty or for connections accepted during an outage.
const refreshScript = `${readRedisTime}
for index = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now, ARGV[index])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return #ARGV - 1`;

/** The two scripts, as ioredis commands defined on the commands connection. */
interface SlotCommands {
  portcullisReserveSlot(key: string, slotId: string, limit: number, staleAfterMs: number): Promise<number>;
  portcullisRefreshSlots(key: string, staleAfterMs: number, ...slotIds: string[]): Promise<number>;
}

/** Settings of the cluster's connection slots. */
export interface ClusterConnectionSlotsOptions {
  link: RedisLink;
  keys: ClusterKeys;
  /** The node's registry, which keeps counting the slots of this node. */
  registry: ConnectionRegistry;
  nodeId: string;
  logger: Logger;
  /** Milliseconds between two renewals of this node's slots. Default 10 000. */
  refreshIntervalMs?: number;
  /** Milliseconds after its last renewal at which a slot counts as free. Default 30 000. */
  staleAfterMs?: number;
}

/**
 * Counts connection slots per owner across the cluster. Each owner has a sorted set in Redis of the
 * ids of its open connections on every node, scored with the time of their last renewal. A
 * reservation is one atomic script that drops stale ids, compares the rest with the limit and adds the
 * new id. Each node renews the ids of its live connections every `refreshIntervalMs` and removes an
 * id when its socket closes. The ids of a node that dies without closing its sockets count against
 * the limit until `staleAfterMs` after their last renewal, then free themselves, so no slot leaks
 * forever.
 *
 * The node's registry counts as well, so an owner never exceeds the limit on one node. While Redis is
 * unavailable, only that local count applies, so an owner can hold up to the limit on every node. The
 * next renewal after the outage adds the connections accepted meanwhile to Redis.
 */
export class ClusterConnectionSlots {
  /** Slot id to the owner's key, for every slot this node holds. */
  private readonly live = new Map<string, string>();
  private readonly commands: Redis & SlotCommands;
  private readonly refreshIntervalMs: number;
  private readonly staleAfterMs: number;
  private readonly reservationWarning: ThrottledWarning;
  private timer: NodeJS.Timeout | null = null;
  private refreshing = false;

  constructor(private readonly options: ClusterConnectionSlotsOptions) {
    this.refreshIntervalMs = options.refreshIntervalMs ?? defaultRefreshIntervalMs;
    this.staleAfterMs = options.staleAfterMs ?? defaultStaleAfterMs;
    this.reservationWarning = new ThrottledWarning(options.logger);
    this.commands = options.link.commands as Redis & SlotCommands;
    this.commands.defineCommand('portcullisReserveSlot', { numberOfKeys: 1, lua: reserveScript });
    this.commands.defineCommand('portcullisRefreshSlots', { numberOfKeys: 1, lua: refreshScript });
    options.link.onAvailabilityChange((available) => {
      if (available) {
        void this.refresh();
      }
    });
  }

  /** Number of slots this node holds. */
  get size(): number {
    return this.live.size;
  }

  /** Starts renewing this node's slots; the timer does not keep the process alive. */
  start(): void {
    if (this.timer) {
      return;
    }
    this.timer = setInterval(() => void this.refresh(), this.refreshIntervalMs);
    this.timer.unref();
  }

  /**
   * Takes one of `limit` slots of an owner on this node and in the cluster, or resolves to null when
   * either count is full. The caller releases the slot when the socket closes.
   */
  async reserve(owner: ConnectionOwner, limit: number): Promise<ConnectionSlot | null> {
    const local = this.options.registry.reserveSlot(owner, limit);
    if (!local) {
      return null;
    }

    const key = this.options.keys.connections(owner);
    const slotId = `${this.options.nodeId}:${crypto.randomUUID()}`;
    if (this.options.link.available && !await this.reserveShared(key, slotId, limit)) {
      local.release();
      return null;
    }

    this.live.set(slotId, key);
    return { release: () => this.release(local, slotId) };
  }

  /** Renews every slot of this node in Redis; skipped while Redis is unavailable or a renewal runs. */
  async refresh(): Promise<void> {
    if (this.refreshing || !this.options.link.available) {
      return;
    }

    this.refreshing = true;
    try {
      const byKey = new Map<string, string[]>();
      for (const [slotId, key] of this.live) {
        byKey.set(key, [...byKey.get(key) ?? [], slotId]);
      }
      const renewals: Promise<number>[] = [];
      for (const [key, slotIds] of byKey) {
        for (let start = 0; start < slotIds.length; start += refreshBatchSize) {
          renewals.push(this.commands.portcullisRefreshSlots(key, this.staleAfterMs, ...slotIds.slice(start, start + refreshBatchSize)));
        }
      }
      const failed = (await Promise.allSettled(renewals)).filter((outcome) => outcome.status === 'rejected').length;
      if (failed > 0) {
        this.options.logger.debug({ event: 'cluster.slot_refresh_failed', failed }, 'renewing connection slots in Redis failed; the next renewal retries');
      }
    } finally {
      this.refreshing = false;
    }
  }

  /**
   * Stops renewing and removes this node's remaining slots from Redis, so that they are free at once.
   * Waits for Redis at most 2 s; slots left behind free themselves once stale.
   */
  async close(): Promise<void> {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }

    const removals = [...this.live].map(([slotId, key]) => this.commands.zrem(key, slotId));
    this.live.clear();
    await Promise.race([Promise.allSettled(removals), delay(closeTimeoutMs, undefined, { ref: false })]);
  }

  private async reserveShared(key: string, slotId: string, limit: number): Promise<boolean> {
    try {
      return await this.commands.portcullisReserveSlot(key, slotId, limit, this.staleAfterMs) === 1;
    } catch (error) {
      // Usually the connection dropped during the script. Only the local count applies, as during
      // any outage, and the next renewal adds the slot to Redis.
      this.reservationWarning.warn({ event: 'cluster.slot_reservation_failed', err: error }, 'reserving a connection slot in Redis failed; only this node\'s count applies');
      return true;
    }
  }

  private release(local: ConnectionSlot, slotId: string): void {
    local.release();
    const key = this.live.get(slotId);
    if (key === undefined) {
      return;
    }

    this.live.delete(slotId);
    // A slot that cannot be removed now is no longer renewed, so it frees itself after staleAfterMs.
    this.commands.zrem(key, slotId).catch((error: unknown) => {
      this.options.logger.debug({ event: 'cluster.slot_release_failed', slot_id: slotId, err: error }, 'removing a connection slot from Redis failed; it frees itself once stale');
    });
  }
}
