// Handshake rate limits count in Redis, so that a budget spent on node A is spent on node B too.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { ErrorCode } from '../../src/errors.ts';
import { startNodePair, type NodePair } from '../support/cluster.ts';
import { rawHandshake, type RawResponse } from '../support/raw-handshake.ts';
import { deleteKeys, sharedRedisUrl, uniqueKeyPrefix } from '../support/redis.ts';
import { addDevice, deviceToken, type TestServer } from '../support/server.ts';
import { deviceHeaders, probeDeviceConnection, type DeviceCredentials } from '../support/websocket.ts';

function handshake(node: TestServer, headers: Record<string, string> = {}): Promise<RawResponse> {
  return rawHandshake({ port: node.port, ca: node.caPem, headers });
}

function assertRejected(response: RawResponse, code: ErrorCode): void {
  assert.equal(response.status, 429);
  assert.equal(response.json?.error, code);
  assert.match(response.headers['retry-after'] ?? '', /^\d+$/);
}

describe('address budget', () => {
  const keyPrefix = uniqueKeyPrefix('rate-ip');
  let pair: NodePair;

  before(async () => {
    pair = await startNodePair({ redisUrl: sharedRedisUrl, redisKeyPrefix: keyPrefix, handshakesPerIpPerMinute: 3 });
  });

  after(async () => {
    await pair?.close();
    await deleteKeys(sharedRedisUrl, keyPrefix);
  });

  test('spent on node A, rejected on node B', async () => {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const response = await handshake(pair.a);
      assert.equal(response.status, 401, `attempt ${attempt + 1} on node A`);
      assert.equal(response.json?.error, 'token_missing');
    }

    assertRejected(await handshake(pair.b), 'rate_limited');
    assertRejected(await handshake(pair.a), 'rate_limited');
  });
});

describe('client budget', () => {
  const keyPrefix = uniqueKeyPrefix('rate-client');
  const clientId = 'rate-shared';
  let pair: NodePair;
  let credentials: DeviceCredentials;

  before(async () => {
    pair = await startNodePair({ redisUrl: sharedRedisUrl, redisKeyPrefix: keyPrefix, handshakesPerClientPerMinute: 2 });
    credentials = { clientId, accessToken: await deviceToken(pair.a, await addDevice(pair.a, clientId)) };
  });

  after(async () => {
    await pair?.close();
    await deleteKeys(sharedRedisUrl, keyPrefix);
  });

  test('spent across nodes, rejected on node A', async () => {
    const first = await probeDeviceConnection(pair.a.port, pair.a.caPem, clientId, credentials.accessToken);
    const second = await probeDeviceConnection(pair.b.port, pair.b.caPem, clientId, credentials.accessToken);
    assert.equal(first.status, 101);
    assert.equal(second.status, 101);

    assertRejected(await handshake(pair.a, deviceHeaders(credentials)), 'rate_limited');
    assertRejected(await handshake(pair.b, deviceHeaders(credentials)), 'rate_limited');
  });
});
