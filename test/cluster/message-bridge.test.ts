// Channel messages cross nodes through Redis: two real servers share one database and one Redis key
// prefix, and WebSocket clients on each node see the messages published on the other.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { Redis } from 'ioredis';

import { logEvents, nodeOrigin, startNodePair, waitForLogEvent, type NodePair } from '../support/cluster.ts';
import { deleteKeys, sharedRedisUrl, uniqueKeyPrefix } from '../support/redis.ts';
import { addDevice, deviceToken, runCli } from '../support/server.ts';
import { commandsChannel, openDeviceSocket, type DeviceCredentials, type Frame, type GatewaySocket } from '../support/websocket.ts';

const keyPrefix = uniqueKeyPrefix('messages');
const clientId = 'bridge-sensor';
const channel = commandsChannel(clientId);

let pair: NodePair;
let credentials: DeviceCredentials;
let publisher: GatewaySocket;
let subscriberA: GatewaySocket;
let subscriberB: GatewaySocket;
let redis: Redis;

function isMessage(data: unknown): (frame: Frame) => boolean {
  return (frame) => frame.type === 'message' && frame.channel === channel && JSON.stringify(frame.data) === JSON.stringify(data);
}

function copiesOf(socket: GatewaySocket, data: unknown): number {
  return socket.received.map((text) => JSON.parse(text) as Frame).filter(isMessage(data)).length;
}

async function subscribe(socket: GatewaySocket): Promise<void> {
  const reply = await socket.request({ type: 'subscribe', channel });
  assert.equal(reply.type, 'subscribed');
}

before(async () => {
  pair = await startNodePair({ redisUrl: sharedRedisUrl, redisKeyPrefix: keyPrefix });
  const device = await addDevice(pair.a, clientId);
  credentials = { clientId, accessToken: await deviceToken(pair.a, device) };
  publisher = await openDeviceSocket(pair.a, credentials);
  subscriberA = await openDeviceSocket(pair.a, credentials);
  subscriberB = await openDeviceSocket(pair.b, credentials);
  await subscribe(subscriberA);
  await subscribe(subscriberB);
  redis = new Redis(sharedRedisUrl);
});

after(async () => {
  await Promise.all([publisher, subscriberA, subscriberB].map((socket) => socket?.close()));
  redis?.disconnect();
  await pair?.close();
  await deleteKeys(sharedRedisUrl, keyPrefix);
});

describe('message bridge', () => {
  test('message from node A reaches node B', async () => {
    const data = { reading: crypto.randomUUID() };

    const reply = await publisher.request({ type: 'publish', channel, data });
    assert.equal(reply.type, 'published');

    const message = await subscriberB.nextFrameWhere(isMessage(data), 'the message on node B');
    assert.deepEqual(message.publisher, { client_id: clientId, sub: clientId });
    assert.equal(typeof message.timestamp, 'number');
  });

  test('publishing node delivers its message once', async () => {
    const data = { once: crypto.randomUUID() };
    const marker = { marker: crypto.randomUUID() };

    await publisher.request({ type: 'publish', channel, data });
    await subscriberA.nextFrameWhere(isMessage(data), 'the message on node A');
    await subscriberB.nextFrameWhere(isMessage(data), 'the message on node B');
    // Node B publishes the marker only after Redis has passed on A's message, and Redis keeps the
    // order of one channel, so an echo of A's message would reach A before the marker does.
    await subscriberB.request({ type: 'publish', channel, data: marker });
    await subscriberA.nextFrameWhere(isMessage(marker), 'the marker on node A');

    assert.equal(copiesOf(subscriberA, data), 1);
    assert.equal(copiesOf(subscriberB, data), 1);
  });

  test('API publish counts local subscribers only', async () => {
    const data = { api: crypto.randomUUID() };

    const response = await pair.a.fetch(`${nodeOrigin(pair.a)}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${credentials.accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });

    assert.equal(response.status, 202);
    assert.deepEqual(await response.json(), { channel, delivered: 1 });
    await subscriberB.nextFrameWhere(isMessage(data), 'the API message on node B');
  });

  test('CLI publish reaches node B', async () => {
    const data = { cli: crypto.randomUUID() };

    const result = await runCli(pair.a.dataDir, ['publish', channel, JSON.stringify(data)]);

    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /delivered to 1 subscriber\(s\) on this server/);
    await subscriberB.nextFrameWhere(isMessage(data), 'the CLI message on node B');
  });

  test('invalid envelopes from Redis are dropped', async () => {
    const node = crypto.randomUUID();
    const valid = { node, channel, data: { valid: true }, publisher: { client_id: 'intruder', sub: 'intruder' }, timestamp: Date.now() };
    let deep: unknown = 'bottom';
    for (let level = 0; level < 40; level += 1) {
      deep = [deep];
    }
    const invalid = [
      'not json',
      JSON.stringify({ ...valid, channel: `${channel}/` }),
      JSON.stringify({ ...valid, data: deep }),
      JSON.stringify({ ...valid, publisher: { client_id: 'intruder' } }),
      JSON.stringify({ ...valid, data: 'x'.repeat(pair.b.options.maxPayloadBytes + 2048) }),
    ];
    const marker = { marker: crypto.randomUUID() };

    for (const payload of invalid) {
      await redis.publish(`${keyPrefix}messages`, payload);
    }
    await redis.publish(`${keyPrefix}messages`, JSON.stringify({ ...valid, data: marker }));
    // Redis delivers one channel in order, so every invalid envelope was handled before the marker.
    const arrived = await subscriberB.nextFrameWhere(isMessage(marker), 'the marker from Redis');

    assert.deepEqual(arrived.publisher, { client_id: 'intruder', sub: 'intruder' });
    assert.equal(subscriberB.received.filter((text) => text.includes('"valid":true')).length, 0);
    const codes = logEvents(pair.b, 'cluster.message_rejected').map((entry) => entry.code);
    for (const code of ['invalid_request', 'invalid_channel', 'data_too_deep', 'payload_too_large']) {
      assert.ok(codes.includes(code), `node B logged no rejection with ${code}`);
    }
  });

  test('oversized message stays on its node', async () => {
    // JSON.stringify writes 1e20 as 21 digits, so this frame fits maxPayloadBytes but its envelope
    // for the other nodes does not.
    const count = Math.floor((pair.a.options.maxPayloadBytes - 200) / 5);
    const id = crypto.randomUUID();
    const marker = { marker: crypto.randomUUID() };

    publisher.socket.send(`{"type":"publish","id":"${id}","channel":"${channel}","data":[${new Array(count).fill('1e20').join(',')}]}`);
    const reply = await publisher.nextFrameWhere((frame) => frame.id === id, 'the reply to the large publish');
    assert.equal(reply.type, 'published');
    await subscriberA.nextFrameWhere((frame) => frame.type === 'message' && Array.isArray(frame.data) && frame.data.length === count, 'the large message on node A');
    await publisher.request({ type: 'publish', channel, data: marker });
    await subscriberB.nextFrameWhere(isMessage(marker), 'the marker on node B');

    assert.equal(subscriberB.received.filter((text) => text.includes('100000000000000000000')).length, 0);
    const [warning] = logEvents(pair.a, 'cluster.message_too_large');
    assert.equal(warning?.channel, channel);
  });

  test('cluster start is logged without the URL', async () => {
    const started = await waitForLogEvent(pair.b, 'cluster.started');

    assert.equal(started.redis, 'redis://127.0.0.1:6379');
    assert.equal(started.key_prefix, keyPrefix);
    assert.equal(typeof started.node_id, 'string');
  });
});
