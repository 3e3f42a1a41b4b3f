// portcullis_redis_up and portcullis_database_up follow real outages: a throwaway redis-server and a
// throwaway PostgreSQL cluster are stopped and started again under a running server.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { parsePrometheusText, sampleValue } from '../support/prometheus-text.ts';
import { ThrowawayRedisServer, uniqueKeyPrefix } from '../support/redis.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { ThrowawayPostgresServer } from '../support/throwaway-postgres.ts';

// Both gauges change within a few seconds of an outage's start or end, because the database probe
// gives up after 2 s, so this bound only stops a hung test.
const gaugeWaitMs = 20_000;

async function scrapeGauge(server: TestServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  const response = await fetch(`${server.running.metricsListenUrl}/metrics`);
  assert.equal(response.status, 200);
  return sampleValue(parsePrometheusText(await response.text()), name, labels);
}

async function waitForGauge(server: TestServer, name: string, labels: Record<string, string>, expected: number): Promise<void> {
  const deadline = Date.now() + gaugeWaitMs;
  for (;;) {
    const value = await scrapeGauge(server, name, labels);
    if (value === expected || Date.now() > deadline) {
      assert.equal(value, expected, `${name}${JSON.stringify(labels)}`);
      return;
    }
    await delay(100);
  }
}

describe('health gauges', () => {
  let redis: ThrowawayRedisServer;
  let postgres: ThrowawayPostgresServer;
  let server: TestServer;

  before(async () => {
    redis = await ThrowawayRedisServer.start(`redis-password-${crypto.randomUUID()}`);
    postgres = await ThrowawayPostgresServer.start();
    server = await startTestServer({
      redisUrl: redis.url,
      redisKeyPrefix: uniqueKeyPrefix('metrics'),
      databaseUrl: postgres.url,
      metricsListen: '127.0.0.1:0',
    });
  });

  after(async () => {
    await server?.close();
    await redis?.destroy();
    await postgres?.destroy();
  });

  test('redis_up follows an outage', async () => {
    assert.equal(await scrapeGauge(server, 'portcullis_redis_up'), 1);

    await redis.stop();
    await waitForGauge(server, 'portcullis_redis_up', {}, 0);

    await redis.start();
    await waitForGauge(server, 'portcullis_redis_up', {}, 1);
  });

  test('database_up follows an outage', async () => {
    assert.equal(await scrapeGauge(server, 'portcullis_database_up', { backend: 'postgresql' }), 1);

    await postgres.stop();
    await waitForGauge(server, 'portcullis_database_up', { backend: 'postgresql' }, 0);

    await postgres.start();
    await waitForGauge(server, 'portcullis_database_up', { backend: 'postgresql' }, 1);
  });
});
