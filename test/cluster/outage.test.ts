// A Redis outage and its end, against a redis-server of this test alone. Each node keeps serving its
// own connections, reports `degraded` on /readyz and logs the outage once. Cross-node delivery resumes
// when the same server starts again on the same port, without a restart of either node.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { logEvents, readiness, startNodePair, waitForLogEvent, waitForReadiness, type NodePair } from '../support/cluster.ts';
import { ThrowawayRedisServer, uniqueKeyPrefix } from '../support/redis.ts';
import { addDevice, addUser, deviceToken } from '../support/server.ts';
import { commandsChannel, openBrowserSocket, openDeviceSocket, type DeviceCredentials, type Frame, type GatewaySocket } from '../support/websocket.ts';

// Marker password of the throwaway server; it must never reach a log line.
const redisPassword = `redis-password-${crypto.randomUUID()}`;
const userPassword = 'outage tests use a long enough password';
const clientId = 'outage-device';
const channel = commandsChannel(clientId);
const outageMessages = [{ outage: 1 }, { outage: 2 }, { outage: 3 }];

let redis: ThrowawayRedisServer;
let pair: NodePair;
let credentials: DeviceCredentials;
let session: ScriptedSession;
let publisher: GatewaySocket;
let subscriberA: GatewaySocket;
let subscriberB: GatewaySocket;
let browserB: GatewaySocket;
const extraSockets: GatewaySocket[] = [];

function isMessage(data: unknown): (frame: Frame) => boolean {
  return (frame) => frame.type === 'message' && frame.channel === channel && JSON.stringify(frame.data) === JSON.stringify(data);
}

async function publish(data: unknown): Promise<void> {
  const reply = await publisher.request({ type: 'publish', channel, data });
  assert.equal(reply.type, 'published');
}

before(async () => {
  redis = await ThrowawayRedisServer.start(redisPassword);
  pair = await startNodePair({ redisUrl: redis.url, redisKeyPrefix: uniqueKeyPrefix('outage') });

  credentials = { clientId, accessToken: await deviceToken(pair.a, await addDevice(pair.a, clientId)) };
  publisher = await openDeviceSocket(pair.a, credentials);
  subscriberA = await openDeviceSocket(pair.a, credentials);
  subscriberB = await openDeviceSocket(pair.b, credentials);
  for (const socket of [subscriberA, subscriberB]) {
    assert.equal((await socket.request({ type: 'subscribe', channel })).type, 'subscribed');
  }

  await addUser(pair.a, 'outage-user', userPassword);
  session = await scriptedLogin(pair.a, 'outage-user', userPassword);
  browserB = await openBrowserSocket(pair.b, session);
});

after(async () => {
  await Promise.all([publisher, subscriberA, subscriberB, browserB, ...extraSockets].map((socket) => socket?.close()));
  await pair?.close();
  await redis?.destroy();
});

describe('Redis outage', () => {
  test('nodes are ready while Redis runs', async () => {
    const data = { before: crypto.randomUUID() };

    assert.deepEqual(await readiness(pair.a), { status: 200, body: { status: 'ready' } });
    assert.deepEqual(await readiness(pair.b), { status: 200, body: { status: 'ready' } });
    await publish(data);
    await subscriberB.nextFrameWhere(isMessage(data), 'the message on node B');
  });

  test('outage degrades /readyz and keeps local delivery', async () => {
    await redis.stop();

    const degraded = await waitForReadiness(pair.a, 'degraded');
    await waitForReadiness(pair.b, 'degraded');
    assert.equal(degraded.redis, 'unavailable');
    assert.equal(typeof degraded.unavailable_since, 'number');
    assert.equal(degraded.undelivered_messages, 0);
    const { status } = await readiness(pair.a);
    assert.equal(status, 503);

    for (const data of outageMessages) {
      await publish(data);
      await subscriberA.nextFrameWhere(isMessage(data), `${JSON.stringify(data)} on node A`);
    }
    assert.equal((await readiness(pair.a)).body.undelivered_messages, outageMessages.length);
    assert.equal(logEvents(pair.a, 'redis.unavailable').length, 1);
    assert.equal(logEvents(pair.b, 'redis.unavailable').length, 1);
  });

  test('handshakes pass during the outage', async () => {
    const socket = await openDeviceSocket(pair.a, credentials);
    extraSockets.push(socket);

    assert.equal(socket.welcome.client_id, clientId);
  });

  test('revocation reaches node B by poll during the outage', async () => {
    const response = await pair.a.fetch(`${pair.a.url}/logout`, {
      method: 'POST',
      headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken },
    });
    assert.equal(response.status, 200);

    const closed = await browserB.waitForClose();
    assert.equal(closed.code, 4403);
    const applied = await waitForLogEvent(pair.b, 'revocation.applied', (entry) => entry.kind === 'grant');
    assert.equal(applied.source, 'database');
  });

  test('restart resumes cross-node delivery', async () => {
    await redis.start();

    await waitForReadiness(pair.a, 'ready');
    await waitForReadiness(pair.b, 'ready');
    await waitForLogEvent(pair.a, 'redis.restored');
    const undelivered = await waitForLogEvent(pair.a, 'cluster.undelivered');
    assert.equal(undelivered.messages, outageMessages.length);
    // A logout records its grant's revocation twice: in the session route, and again when the auth
    // server revokes the refresh token. So the count is at least 1.
    assert.ok(Number(undelivered.revocations) >= 1, `revocations: ${String(undelivered.revocations)}`);
    assert.equal(logEvents(pair.a, 'redis.unavailable').length, 1);

    const data = { after: crypto.randomUUID() };
    await publish(data);
    await subscriberB.nextFrameWhere(isMessage(data), 'the message on node B after the restart');
    // Node A's messages reach Redis in order, so replayed outage messages would have come first.
    for (const lost of outageMessages) {
      assert.equal(subscriberB.received.filter((text) => text.includes(JSON.stringify(lost))).length, 0);
    }
    assert.ok(subscriberB.isOpen);
  });

  test('logs never carry the Redis password', () => {
    const lines = [...pair.a.logs, ...pair.b.logs];

    assert.ok(lines.length > 0);
    assert.deepEqual(lines.filter((line) => line.includes(redisPassword)), []);
    assert.ok(logEvents(pair.a, 'redis.unavailable').every((entry) => entry.redis === `redis://127.0.0.1:${redis.port}`));
  });
});
