import crypto from 'node:crypto';

import type { Logger } from 'pino';

import type { ChannelBroker } from '../channels/broker.ts';
import type { RateLimiterFactory } from '../gateway/handshake-limits.ts';
import type { ConnectionOwner, ConnectionRegistry, ConnectionSlot } from '../gateway/registry.ts';
import type { RevocationNotice } from '../gateway/revocations.ts';
import { ClusterConnectionSlots } from './connection-slots.ts';
import { clusterKeys } from './keys.ts';
import { MessageBridge } from './message-bridge.ts';
import type { ProofReplayCache } from '../gateway/dpop/replay-cache.ts';
import { createSharedReplayCache } from './proof-replay.ts';
import { createRedisRateLimiterFactory } from './rate-limiters.ts';
import { describeRedisUrl, RedisLink } from './redis-link.ts';
import { RevocationBridge } from './revocation-bridge.ts';

/** Inputs of `startCluster`. */
export interface ClusterInit {
  /** `redis://` or `rediss://` URL; it may carry a password and is never logged. */
  redisUrl: string;
  /** Start of every key and channel name, `redisKeyPrefix`. */
  keyPrefix: string;
  /** The node's `maxPayloadBytes`, which bounds the messages accepted from other nodes. */
  maxPayloadBytes: number;
  logger: Logger;
  broker: ChannelBroker;
  registry: ConnectionRegistry;
  /** Decides on DPoP proofs while Redis cannot be reached: the database's record of used proofs. */
  proofReplayFallback: ProofReplayCache;
}

/** Redis state of one node, as `/readyz` reports it. */
export interface ClusterStatus {
  redis: 'available' | 'unavailable';
  /** Epoch seconds at which the current outage started; null while Redis is available. */
  unavailableSince: number | null;
  /** Messages published on this node since the outage started that reached no other node. */
  undeliveredMessages: number;
}

/** The Redis-backed parts of one node. */
export interface Cluster {
  /** Random id of this node, new at every start, carried by its messages and slot ids. */
  nodeId: string;
  /** Factory of the handshake rate limiters, which count in Redis. */
  createRateLimiter: RateLimiterFactory;
  /** DPoP proofs already used on any node. */
  proofReplayCache: ProofReplayCache;
  /** Takes a connection slot counted across the cluster, for the upgrade handler. */
  reserveSlot(owner: ConnectionOwner, limit: number): Promise<ConnectionSlot | null>;
  /** Tells the other nodes of a revocation recorded here. */
  announceRevocation(revocation: RevocationNotice): void;
  /** Calls `apply` for every revocation another node announces. */
  listenForRevocations(apply: (revocation: RevocationNotice) => void): void;
  status(): ClusterStatus;
  /** Frees this node's connection slots in Redis and closes both connections. */
  close(): Promise<void>;
}

/**
 * Connects the node to Redis and starts the message bridge and the connection-slot renewals. It
 * waits for the first connection attempt only: when Redis is down, the node starts degraded and
 * ioredis keeps retrying.
 */
export async function startCluster(init: ClusterInit): Promise<Cluster> {
  const nodeId = crypto.randomUUID();
  const keys = clusterKeys(init.keyPrefix);
  const link = new RedisLink({ url: init.redisUrl, logger: init.logger });

  const messages = new MessageBridge({ link, broker: init.broker, channel: keys.messages, nodeId, maxPayloadBytes: init.maxPayloadBytes, logger: init.logger });
  const revocations = new RevocationBridge({ link, channel: keys.revocations, nodeId, logger: init.logger });
  const slots = new ClusterConnectionSlots({ link, keys, registry: init.registry, nodeId, logger: init.logger });
  link.onAvailabilityChange((available) => {
    if (available) {
      reportUndelivered(init.logger, messages, revocations);
    }
  });

  messages.start();
  // Registered before the first attempt, so that the first SUBSCRIBE covers both channels.
  // Announcements that arrive before listenForRevocations are dropped, because no socket is open yet.
  let applyRevocation: (revocation: RevocationNotice) => void = () => {};
  revocations.listen((revocation) => applyRevocation(revocation));
  slots.start();
  init.logger.info({ event: 'cluster.started', node_id: nodeId, redis: describeRedisUrl(init.redisUrl), key_prefix: init.keyPrefix }, 'sharing messages, revocations and limits through Redis');
  await link.waitForFirstAttempt();

  return {
    nodeId,
    createRateLimiter: createRedisRateLimiterFactory(link.commands, keys),
    proofReplayCache: createSharedReplayCache(link.commands, init.keyPrefix, init.logger, init.proofReplayFallback),
    reserveSlot: (owner, limit) => slots.reserve(owner, limit),
    announceRevocation: (revocation) => revocations.announce(revocation),
    listenForRevocations: (apply) => { applyRevocation = apply; },
    status() {
      const { unavailableSinceMs } = link.status();
      return {
        redis: unavailableSinceMs === null ? 'available' : 'unavailable',
        unavailableSince: unavailableSinceMs === null ? null : Math.floor(unavailableSinceMs / 1000),
        undeliveredMessages: messages.undelivered,
      };
    },
    async close() {
      messages.stop();
      await slots.close();
      await link.close();
    },
  };
}

/** Logs what an outage kept from the other nodes, once Redis is back. */
function reportUndelivered(logger: Logger, messages: MessageBridge, revocations: RevocationBridge): void {
  const undeliveredMessages = messages.takeUndelivered();
  const unannouncedRevocations = revocations.takeUnannounced();
  if (undeliveredMessages === 0 && unannouncedRevocations === 0) {
    return;
  }

  logger.warn({
    event: 'cluster.undelivered',
    messages: undeliveredMessages,
    revocations: unannouncedRevocations,
  }, 'messages published during the Redis outage reached only their own node and are not replayed; revocations reach the other nodes through the database poll');
}
