// A DPoP proof used on one node is refused on the other: the replay cache is shared through the
// real Redis. Each node also keeps its own cache; the unit tests below check its expiry and bound.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Redis } from 'ioredis';

import { MemoryReplayCache } from '../../src/gateway/dpop/replay-cache.ts';
import { startNodePair, waitForReadiness, type NodePair } from '../support/cluster.ts';
import { dpopDeviceToken, generateProofKey, handshakeProof, type ProofKey } from '../support/dpop.ts';
import { rawHandshake } from '../support/raw-handshake.ts';
import { deleteKeys, sharedRedisUrl, ThrowawayRedisServer, uniqueKeyPrefix } from '../support/redis.ts';
import { addDevice, type TestServer } from '../support/server.ts';

const clientId = 'replay-sensor';
const testOptions = { timeout: 120_000 };

describe('the shared DPoP replay cache', () => {
  const keyPrefix = uniqueKeyPrefix('proof-replay');
  let pair: NodePair;
  let key: ProofKey;
  let accessToken: string;
  let redis: Redis;

  before(async () => {
    pair = await startNodePair({ redisUrl: sharedRedisUrl, redisKeyPrefix: keyPrefix });
    key = await generateProofKey();
    accessToken = await dpopDeviceToken(pair.a, await addDevice(pair.a, clientId), key);
    redis = new Redis(sharedRedisUrl);
  });

  after(async () => {
    await pair.close();
    await deleteKeys(sharedRedisUrl, keyPrefix);
    redis.disconnect();
  });

  function handshakeAt(node: TestServer, proof: string) {
    return rawHandshake({ port: node.port, ca: node.caPem, headers: { Authorization: `DPoP ${accessToken}`, DPoP: proof, 'X-Client-Id': clientId } });
  }

  test('a proof accepted by node A is refused by node B', testOptions, async () => {
    // Node B's public URL is node A's, so one proof names the same htu on both.
    const proof = await handshakeProof(pair.a, key, accessToken);

    assert.equal((await handshakeAt(pair.a, proof)).status, 101);
    const replayed = await handshakeAt(pair.b, proof);

    assert.equal(replayed.status, 401);
    assert.equal(replayed.headers['x-portcullis-error'], 'invalid_dpop_proof');
  });

  test('used proof expires in Redis', testOptions, async () => {
    await handshakeAt(pair.b, await handshakeProof(pair.a, key, accessToken));

    const stored = await redis.keys(`${keyPrefix}dpop:${key.jkt}:*`);
    assert.ok(stored.length >= 1);
    const ttlMs = await redis.pttl(stored[0]);
    assert.ok(ttlMs > 0, `the key has no expiry (${ttlMs})`);
  });
});

describe('replay across nodes without Redis', () => {
  let pair: NodePair;
  let key: ProofKey;
  let accessToken: string;

  before(async () => {
    pair = await startNodePair();
    key = await generateProofKey();
    accessToken = await dpopDeviceToken(pair.a, await addDevice(pair.a, 'shared-db-sensor'), key);
  });

  after(async () => {
    await pair.close();
  });

  test('the shared database rejects the replay', testOptions, async () => {
    const proof = await handshakeProof(pair.a, key, accessToken);
    const headers = { Authorization: `DPoP ${accessToken}`, DPoP: proof, 'X-Client-Id': 'shared-db-sensor' };

    assert.equal((await rawHandshake({ port: pair.a.port, ca: pair.a.caPem, headers })).status, 101);
    const replayed = await rawHandshake({ port: pair.b.port, ca: pair.b.caPem, headers });

    assert.equal(replayed.status, 401);
    assert.equal(replayed.headers['x-portcullis-error'], 'invalid_dpop_proof');
  });
});

describe('replay during a Redis outage', () => {
  let redis: ThrowawayRedisServer;
  let pair: NodePair;
  let key: ProofKey;
  let accessToken: string;

  before(async () => {
    redis = await ThrowawayRedisServer.start('proof replay outage password');
    pair = await startNodePair({ redisUrl: redis.url, redisKeyPrefix: uniqueKeyPrefix('proof-outage') });
    key = await generateProofKey();
    accessToken = await dpopDeviceToken(pair.a, await addDevice(pair.a, 'outage-sensor'), key);
  });

  after(async () => {
    await pair?.close();
    await redis?.destroy();
  });

  test('the database decides while Redis is down', testOptions, async () => {
    await redis.stop();
    await waitForReadiness(pair.a, 'degraded');
    await waitForReadiness(pair.b, 'degraded');
    const proof = await handshakeProof(pair.a, key, accessToken);
    const headers = { Authorization: `DPoP ${accessToken}`, DPoP: proof, 'X-Client-Id': 'outage-sensor' };

    assert.equal((await rawHandshake({ port: pair.a.port, ca: pair.a.caPem, headers })).status, 101);
    const replayed = await rawHandshake({ port: pair.b.port, ca: pair.b.caPem, headers });

    assert.equal(replayed.status, 401);
    assert.equal(replayed.headers['x-portcullis-error'], 'invalid_dpop_proof');
  });
});

describe('the memory replay cache', () => {
  test('refuses a key until it expires, then accepts it again', () => {
    const cache = new MemoryReplayCache();

    assert.equal(cache.claim('a', 2000, 1000), true);
    assert.equal(cache.claim('a', 2000, 1500), false);
    assert.equal(cache.claim('a', 3000, 2000), true);
  });

  test('drops expired entries and stays within its bound', () => {
    const cache = new MemoryReplayCache(3);
    for (const key of ['a', 'b', 'c']) {
      cache.claim(key, 2000, 1000);
    }

    cache.claim('d', 2000, 1000);
    assert.equal(cache.size, 3);
    cache.claim('e', 5000, 2500);
    assert.equal(cache.size, 1);
  });
});
