// GET /readyz: always ready without Redis; degraded while a configured Redis is down, from the start
// on, and ready once it comes up.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, describe, test } from 'node:test';

import { logEvents, readiness, waitForLogEvent, waitForReadiness } from '../support/cluster.ts';
import { ThrowawayRedisServer, uniqueKeyPrefix } from '../support/redis.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

describe('without Redis', () => {
  let server: TestServer;

  after(async () => {
    await server?.close();
  });

  test('readyz is ready', async () => {
    server = await startTestServer();

    const response = await server.fetch(`${server.url}/readyz`);

    assert.equal(response.status, 200);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    assert.deepEqual(await response.json(), { status: 'ready' });
    assert.deepEqual(logEvents(server, 'cluster.started'), []);
  });
});

describe('Redis down at start', () => {
  let redis: ThrowawayRedisServer;
  let server: TestServer;

  after(async () => {
    await server?.close();
    await redis?.destroy();
  });

  test('node starts degraded and becomes ready', async () => {
    redis = await ThrowawayRedisServer.start(`redis-password-${crypto.randomUUID()}`);
    await redis.stop();

    server = await startTestServer({ redisUrl: redis.url, redisKeyPrefix: uniqueKeyPrefix('readyz') });
    const degraded = await readiness(server);
    assert.equal(degraded.status, 503);
    assert.equal(degraded.body.status, 'degraded');
    assert.equal(degraded.body.redis, 'unavailable');
    assert.equal(degraded.body.undelivered_messages, 0);
    assert.equal(logEvents(server, 'redis.unavailable').length, 1);

    await redis.start();
    await waitForReadiness(server, 'ready');
    await waitForLogEvent(server, 'redis.restored');
    assert.equal(logEvents(server, 'redis.unavailable').length, 1);
  });
});
