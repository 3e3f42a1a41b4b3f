// Connection caps count across nodes, and the slots of a node that dies free themselves.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { Redis } from 'ioredis';
import pino from 'pino';

import { ClusterConnectionSlots } from '../../src/cluster/connection-slots.ts';
import { clusterKeys } from '../../src/cluster/keys.ts';
import { RedisLink } from '../../src/cluster/redis-link.ts';
import type { ErrorCode } from '../../src/errors.ts';
import { ConnectionRegistry, type ConnectionOwner } from '../../src/gateway/registry.ts';
import { startNodePair, type NodePair } from '../support/cluster.ts';
import { rawHandshake, type RawResponse } from '../support/raw-handshake.ts';
import { deleteKeys, sharedRedisUrl, uniqueKeyPrefix } from '../support/redis.ts';
import { addDevice, deviceToken, type TestServer } from '../support/server.ts';
import { deviceHeaders, openDeviceSocket, socketWaitMs, type DeviceCredentials, type GatewaySocket } from '../support/websocket.ts';

const silent = pino({ level: 'silent' });

function handshake(node: TestServer, credentials: DeviceCredentials): Promise<RawResponse> {
  return rawHandshake({ port: node.port, ca: node.caPem, headers: deviceHeaders(credentials) });
}

function assertRejected(response: RawResponse, code: ErrorCode): void {
  assert.equal(response.status, 429);
  assert.equal(response.json?.error, code);
}

/** Polls `read` until it returns `expected`, and rejects after `socketWaitMs` with the last value. */
async function waitForValue<T>(read: () => Promise<T>, expected: T, what: string): Promise<void> {
  const pollMs = 20;
  let last: T | undefined;
  for (let waited = 0; waited < socketWaitMs; waited += pollMs) {
    last = await read();
    if (last === expected) {
      return;
    }
    await delay(pollMs);
  }
  throw new Error(`${what} was ${String(last)}, not ${String(expected)}, after ${socketWaitMs} ms`);
}

describe('cap across nodes', () => {
  const keyPrefix = uniqueKeyPrefix('slots');
  const clientId = 'capped-device';
  let pair: NodePair;
  let credentials: DeviceCredentials;
  let redis: Redis;
  const sockets: GatewaySocket[] = [];

  before(async () => {
    pair = await startNodePair({ redisUrl: sharedRedisUrl, redisKeyPrefix: keyPrefix, maxConnectionsPerClient: 2 });
    credentials = { clientId, accessToken: await deviceToken(pair.a, await addDevice(pair.a, clientId)) };
    redis = new Redis(sharedRedisUrl);
  });

  after(async () => {
    await Promise.all(sockets.map((socket) => socket.close()));
    redis?.disconnect();
    await pair?.close();
    await deleteKeys(sharedRedisUrl, keyPrefix);
  });

  test('one socket per node fills a cap of 2', async () => {
    sockets.push(await openDeviceSocket(pair.a, credentials));
    sockets.push(await openDeviceSocket(pair.b, credentials));

    assertRejected(await handshake(pair.a, credentials), 'too_many_connections');
    assertRejected(await handshake(pair.b, credentials), 'too_many_connections');
  });

  test('close on node B frees a slot for node A', async () => {
    const onB = sockets.pop()!;
    const key = clusterKeys(keyPrefix).connections({ kind: 'device', clientId });

    await onB.close();
    await waitForValue(() => redis.zcard(key), 1, `the number of slots in ${key}`);

    sockets.push(await openDeviceSocket(pair.a, credentials));
    assertRejected(await handshake(pair.b, credentials), 'too_many_connections');
  });
});

describe('slots of a dead node', () => {
  const keyPrefix = uniqueKeyPrefix('stale-slots');
  const keys = clusterKeys(keyPrefix);
  const owner: ConnectionOwner = { kind: 'device', clientId: 'orphaned' };
  const staleAfterMs = 2_000;
  let redis: Redis;
  const links: RedisLink[] = [];
  const slotSets: ClusterConnectionSlots[] = [];

  async function startNode(nodeId: string): Promise<{ link: RedisLink; slots: ClusterConnectionSlots }> {
    const link = new RedisLink({ url: sharedRedisUrl, logger: silent });
    // The link counts as available once its subscriber has subscribed to some channel.
    link.onMessage(`${keyPrefix}unused`, () => {});
    await link.waitForFirstAttempt();
    assert.equal(link.available, true);
    const registry = new ConnectionRegistry({ logger: silent, expiryWarningSeconds: 30 });
    const slots = new ClusterConnectionSlots({ link, keys, registry, nodeId, logger: silent, refreshIntervalMs: 100, staleAfterMs });
    slots.start();
    links.push(link);
    slotSets.push(slots);
    return { link, slots };
  }

  before(() => {
    redis = new Redis(sharedRedisUrl);
  });

  after(async () => {
    await Promise.all(slotSets.map((slots) => slots.close()));
    await Promise.all(links.map((link) => link.close()));
    redis?.disconnect();
    await deleteKeys(sharedRedisUrl, keyPrefix);
  });

  test('release removes the slot', async () => {
    const { slots } = await startNode('releasing-node');

    const slot = await slots.reserve({ kind: 'device', clientId: 'released' }, 1);
    assert.ok(slot);
    const key = keys.connections({ kind: 'device', clientId: 'released' });
    assert.equal(await redis.zcard(key), 1);

    slot.release();
    await waitForValue(() => redis.zcard(key), 0, `the number of slots in ${key}`);
  });

  test('renewal keeps a live slot', async () => {
    const { slots } = await startNode('renewing-node');
    const key = keys.connections({ kind: 'device', clientId: 'renewed' });

    assert.ok(await slots.reserve({ kind: 'device', clientId: 'renewed' }, 1));
    const [, firstScore] = await redis.zrange(key, 0, -1, 'WITHSCORES');

    await waitForValue(async () => (await redis.zrange(key, 0, -1, 'WITHSCORES'))[1] !== firstScore, true, 'a renewed score');
  });

  test('dead node frees its slot after the stale age', async () => {
    const dying = await startNode('dying-node');
    const survivor = await startNode('surviving-node');
    // The survivor's renewals keep the owner's key alive, so only the stale check can free the slot.
    assert.ok(await survivor.slots.reserve(owner, 2));
    assert.ok(await dying.slots.reserve(owner, 2));
    assert.equal(await survivor.slots.reserve(owner, 2), null);

    // The node ends without releasing its slot, as a crashed process would.
    await dying.link.close();

    let freedSlot = null;
    for (let waited = 0; waited < socketWaitMs && !freedSlot; waited += 100) {
      freedSlot = await survivor.slots.reserve(owner, 2);
      if (!freedSlot) {
        await delay(100);
      }
    }
    assert.ok(freedSlot, `the slot was still taken ${socketWaitMs} ms after its node ended`);
    const holders = await redis.zrange(keys.connections(owner), 0, -1);
    assert.equal(holders.length, 2);
    assert.ok(holders.every((holder) => holder.startsWith('surviving-node:')), `holders: ${holders.join(', ')}`);
  });
});
