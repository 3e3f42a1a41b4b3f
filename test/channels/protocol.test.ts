// The `portcullis.v1` channel protocol against a real server over TLS: delivery, permissions,
// frame validation, the subscription limit, the message rate and in-band narrowing of scopes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { scriptedLogin } from '../support/browser-login.ts';
import { addDevice, addUser, deviceToken, runCli, startTestServer, type TestServer } from '../support/server.ts';
import { openBrowserSocket, openDeviceSocket, socketWaitMs, type Frame, type GatewaySocket } from '../support/websocket.ts';

type Credentials = { client_id: string; client_secret: string };

const backendScope = 'publish:devices/*/commands subscribe:devices/#';
// A safety stop for each test. No assertion depends on how long anything took.
const stepTimeout = { timeout: 60_000 };

/** Opens a device socket with a fresh token, narrowed to `scope` when given. */
async function connectDevice(server: TestServer, device: Credentials, scope?: string): Promise<GatewaySocket> {
  const accessToken = await deviceToken(server, device, scope);
  return openDeviceSocket(server, { clientId: device.client_id, accessToken });
}

/** Sends one frame and returns the next frame the socket receives. */
async function exchange(socket: GatewaySocket, frame: Record<string, unknown>): Promise<Frame> {
  socket.send(frame);
  return socket.nextFrame();
}

/** Returns the `error` frame fields the tests compare, leaving out the fixed description. */
function errorOf(frame: Frame): { type: string; id: unknown; code: unknown } {
  assert.equal(typeof frame.description, 'string', `frame without a description: ${JSON.stringify(frame)}`);
  return { type: frame.type, id: frame.id, code: frame.code };
}

/** Parsed log lines that carry `event`. */
function logEvents(server: TestServer, event: string): Array<Record<string, unknown>> {
  return server.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.event === event);
}

/** True once the server has logged the end of `socket`'s connection. */
function connectionClosed(server: TestServer, socket: GatewaySocket): boolean {
  return logEvents(server, 'connection.closed').some((line) => line.connection_id === socket.welcome.connection_id);
}

/** Polls `condition` every 50 ms and rejects, naming `what`, if it is still false after `socketWaitMs`. */
async function waitFor(condition: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !condition(); waited += 50) {
    if (waited >= socketWaitMs) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Stops reading the socket's TCP stream, so the client neither reads nor replies to a close frame and
 * its side stays open, as a client that ignores the closing handshake would. Returns the stream.
 */
function pauseReading(socket: GatewaySocket): { resume(): void } {
  const tcp = (socket.socket as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  tcp.pause();
  return tcp;
}

/** Reads `message` frames up to the first one on `last`, at most 1000, and returns their channels. */
async function channelsUntil(socket: GatewaySocket, last: string): Promise<string[]> {
  const channels: string[] = [];
  while (channels.at(-1) !== last) {
    assert.ok(channels.length < 1000, `no message on ${last} among the first 1000`);
    channels.push(String((await socket.nextFrame()).channel));
  }
  return channels;
}

describe('channel protocol', () => {
  let server: TestServer;
  let sensorA: Credentials;
  let sensorB: Credentials;
  let backend: Credentials;
  let narrowable: Credentials;

  before(async () => {
    server = await startTestServer();
    await addUser(server, 'alice', 'alice channel password');
    await addUser(server, 'bob', 'bob channel password');
    sensorA = await addDevice(server, 'sensor-a');
    sensorB = await addDevice(server, 'sensor-b');
    backend = await addDevice(server, 'backend', ['--scope', backendScope]);
    await addDevice(server, 'meter-1', ['--owner', 'alice']);
    narrowable = await addDevice(server, 'sensor-n', ['--scope', 'publish:devices/{client_id}/# subscribe:devices/{client_id}/commands subscribe:devices/{client_id}/config']);
  }, stepTimeout);

  after(async () => {
    await server?.close();
  });

  test('telemetry reaches subscribed backend', stepTimeout, async () => {
    const watcher = await connectDevice(server, backend);
    const device = await connectDevice(server, sensorA);
    try {
      assert.deepEqual(await exchange(watcher, { type: 'subscribe', id: 1, channel: 'devices/#' }), { type: 'subscribed', id: 1, channel: 'devices/#' });

      const sentAt = Date.now();
      const reply = await exchange(device, { type: 'publish', id: 'p-1', channel: 'devices/sensor-a/telemetry', data: { celsius: 21.5, seq: 1 } });
      const message = await watcher.nextFrame();
      const afterDelivery = Date.now();

      assert.deepEqual(reply, { type: 'published', id: 'p-1', channel: 'devices/sensor-a/telemetry' });
      const { timestamp, ...rest } = message;
      assert.deepEqual(rest, {
        type: 'message',
        channel: 'devices/sensor-a/telemetry',
        data: { celsius: 21.5, seq: 1 },
        publisher: { client_id: 'sensor-a', sub: 'sensor-a' },
      });
      // Epoch milliseconds from the server clock, which this process shares.
      assert.ok(Number.isInteger(timestamp), `timestamp ${String(timestamp)} is not an integer`);
      assert.ok((timestamp as number) >= sentAt, `timestamp ${String(timestamp)} is before the publish at ${sentAt}`);
      assert.ok((timestamp as number) <= afterDelivery, `timestamp ${String(timestamp)} is after the delivery at ${afterDelivery}`);
    } finally {
      await watcher.close();
      await device.close();
    }
  });

  test('backend command reaches one device', stepTimeout, async () => {
    const sender = await connectDevice(server, backend);
    const deviceA = await connectDevice(server, sensorA);
    const deviceB = await connectDevice(server, sensorB);
    try {
      assert.equal((await exchange(deviceA, { type: 'subscribe', id: 'a', channel: 'devices/sensor-a/commands' })).type, 'subscribed');
      assert.equal((await exchange(deviceB, { type: 'subscribe', id: 'b', channel: 'devices/sensor-b/commands' })).type, 'subscribed');

      assert.deepEqual(await exchange(sender, { type: 'publish', id: 7, channel: 'devices/sensor-b/commands', data: 'reboot' }), { type: 'published', id: 7, channel: 'devices/sensor-b/commands' });
      const received = await deviceB.nextFrame();
      assert.equal(received.type, 'message');
      assert.equal(received.data, 'reboot');
      assert.deepEqual(received.publisher, { client_id: 'backend', sub: 'backend' });

      // Device A was listening too: its own command is the first frame it gets.
      await exchange(sender, { type: 'publish', id: 8, channel: 'devices/sensor-a/commands', data: 'calibrate' });
      const first = await deviceA.nextFrame();
      assert.equal(first.channel, 'devices/sensor-a/commands');
      assert.equal(first.data, 'calibrate');
    } finally {
      await Promise.all([sender.close(), deviceA.close(), deviceB.close()]);
    }
  });

  test('null data is published', stepTimeout, async () => {
    const device = await connectDevice(server, sensorA);
    try {
      assert.deepEqual(await exchange(device, { type: 'publish', id: 0, channel: 'devices/sensor-a/heartbeat', data: null }), { type: 'published', id: 0, channel: 'devices/sensor-a/heartbeat' });
    } finally {
      await device.close();
    }
  });

  test('trailing # also matches its parent', stepTimeout, async () => {
    const watcher = await connectDevice(server, backend);
    try {
      await exchange(watcher, { type: 'subscribe', id: 1, channel: 'devices/sensor-a/#' });
      server.running.publish('devices/sensor-a', 'parent');
      server.running.publish('devices/sensor-b/telemetry', 'elsewhere');
      server.running.publish('devices/sensor-a/x/y', 'deep');

      assert.equal((await watcher.nextFrame()).data, 'parent');
      assert.equal((await watcher.nextFrame()).data, 'deep');
    } finally {
      await watcher.close();
    }
  });

  test('unsubscribe stops delivery', stepTimeout, async () => {
    const watcher = await connectDevice(server, backend);
    try {
      await exchange(watcher, { type: 'subscribe', id: 1, channel: 'devices/sensor-a/status' });
      await exchange(watcher, { type: 'subscribe', id: 2, channel: 'devices/sensor-b/status' });
      assert.deepEqual(await exchange(watcher, { type: 'unsubscribe', id: 3, channel: 'devices/sensor-a/status' }), { type: 'unsubscribed', id: 3, channel: 'devices/sensor-a/status' });

      server.running.publish('devices/sensor-a/status', 'dropped');
      server.running.publish('devices/sensor-b/status', 'kept');

      assert.equal((await watcher.nextFrame()).data, 'kept');
    } finally {
      await watcher.close();
    }
  });

  test('device refused outside its channels', stepTimeout, async () => {
    const watcher = await connectDevice(server, backend);
    const device = await connectDevice(server, sensorA);
    try {
      await exchange(watcher, { type: 'subscribe', id: 1, channel: 'devices/#' });
      const cases: Array<[string, Record<string, unknown>]> = [
        ['subscribe to another device', { type: 'subscribe', id: 'f-1', channel: 'devices/sensor-b/commands' }],
        ['subscribe to all devices', { type: 'subscribe', id: 'f-2', channel: 'devices/#' }],
        ['subscribe to own telemetry', { type: 'subscribe', id: 'f-3', channel: 'devices/sensor-a/telemetry' }],
        ['subscribe with a wildcard', { type: 'subscribe', id: 'f-4', channel: 'devices/*/commands' }],
        ['publish as another device', { type: 'publish', id: 'f-5', channel: 'devices/sensor-b/telemetry', data: 1 }],
        ['publish outside devices', { type: 'publish', id: 'f-6', channel: 'users/alice/notice', data: 1 }],
      ];

      for (const [label, frame] of cases) {
        assert.deepEqual(errorOf(await exchange(device, frame)), { type: 'error', id: frame.id, code: 'forbidden' }, label);
      }

      assert.equal(device.isOpen, true);
      assert.deepEqual(await exchange(device, { type: 'subscribe', id: 'ok-1', channel: 'devices/sensor-a/commands' }), { type: 'subscribed', id: 'ok-1', channel: 'devices/sensor-a/commands' });
      assert.deepEqual(await exchange(device, { type: 'publish', id: 'ok-2', channel: 'devices/sensor-a/telemetry', data: 'allowed' }), { type: 'published', id: 'ok-2', channel: 'devices/sensor-a/telemetry' });
      // The refused publishes were not delivered, so the allowed one is the first message the backend receives.
      const first = await watcher.nextFrame();
      assert.equal(first.channel, 'devices/sensor-a/telemetry');
      assert.equal(first.data, 'allowed');
    } finally {
      await watcher.close();
      await device.close();
    }
  });

  test('browser refused outside its channels', stepTimeout, async () => {
    const bob = await openBrowserSocket(server, await scriptedLogin(server, 'bob', 'bob channel password'));
    const alice = await openBrowserSocket(server, await scriptedLogin(server, 'alice', 'alice channel password'));
    try {
      const cases: Array<[string, GatewaySocket, Record<string, unknown>]> = [
        ['bob subscribes to a device of alice', bob, { type: 'subscribe', id: 'b-1', channel: 'devices/meter-1/#' }],
        ['bob subscribes to its telemetry', bob, { type: 'subscribe', id: 'b-2', channel: 'devices/meter-1/telemetry' }],
        ['bob subscribes to alice', bob, { type: 'subscribe', id: 'b-3', channel: 'users/alice/#' }],
        ['bob publishes to his own channel', bob, { type: 'publish', id: 'b-4', channel: 'users/bob/notice', data: 1 }],
        ['alice publishes to her own channel', alice, { type: 'publish', id: 'a-1', channel: 'users/alice/notice', data: 1 }],
        ['alice publishes to her device', alice, { type: 'publish', id: 'a-2', channel: 'devices/meter-1/commands', data: 1 }],
      ];

      for (const [label, socket, frame] of cases) {
        assert.deepEqual(errorOf(await exchange(socket, frame)), { type: 'error', id: frame.id, code: 'forbidden' }, label);
      }

      assert.deepEqual(await exchange(bob, { type: 'subscribe', id: 'b-5', channel: 'users/bob/#' }), { type: 'subscribed', id: 'b-5', channel: 'users/bob/#' });
      assert.deepEqual(await exchange(alice, { type: 'subscribe', id: 'a-3', channel: 'devices/meter-1/#' }), { type: 'subscribed', id: 'a-3', channel: 'devices/meter-1/#' });
    } finally {
      await bob.close();
      await alice.close();
    }
  });

  test('invalid frames get their error code', stepTimeout, async () => {
    const device = await connectDevice(server, sensorA);
    const hugeId = 'i'.repeat(10_000);
    try {
      // A subscriber on the target channel, so an accepted publish would be serialised for delivery.
      assert.equal((await exchange(device, { type: 'subscribe', id: 'pre', channel: 'devices/sensor-a/commands' })).type, 'subscribed');
      const cases: Array<[string, string | Buffer, { id: unknown; code: string }]> = [
        ['binary frame', Buffer.from(JSON.stringify({ type: 'subscribe', id: 1, channel: 'devices/sensor-a/commands' })), { id: null, code: 'binary_not_supported' }],
        ['invalid JSON', '{"type":"subscribe",', { id: null, code: 'invalid_json' }],
        ['empty text', '', { id: null, code: 'invalid_json' }],
        ['JSON array', '[{"type":"subscribe","id":1,"channel":"devices/sensor-a/commands"}]', { id: null, code: 'invalid_message' }],
        ['JSON number', '42', { id: null, code: 'invalid_message' }],
        ['JSON string', '"subscribe"', { id: null, code: 'invalid_message' }],
        ['JSON null', 'null', { id: null, code: 'invalid_message' }],
        ['unknown type', JSON.stringify({ type: 'frobnicate', id: 'u-1' }), { id: 'u-1', code: 'unknown_type' }],
        ['type missing', JSON.stringify({ id: 'u-2', channel: 'devices/sensor-a/commands' }), { id: 'u-2', code: 'unknown_type' }],
        ['message type from the server', JSON.stringify({ type: 'message', id: 'u-3', channel: 'devices/sensor-a/commands' }), { id: 'u-3', code: 'unknown_type' }],
        ['id missing', JSON.stringify({ type: 'subscribe', channel: 'devices/sensor-a/commands' }), { id: null, code: 'invalid_id' }],
        ['huge id', JSON.stringify({ type: 'subscribe', id: hugeId, channel: 'devices/sensor-a/commands' }), { id: null, code: 'invalid_id' }],
        ['id of 65 characters', JSON.stringify({ type: 'subscribe', id: 'i'.repeat(65), channel: 'devices/sensor-a/commands' }), { id: null, code: 'invalid_id' }],
        ['empty id', JSON.stringify({ type: 'subscribe', id: '', channel: 'devices/sensor-a/commands' }), { id: null, code: 'invalid_id' }],
        ['negative id', JSON.stringify({ type: 'subscribe', id: -1, channel: 'devices/sensor-a/commands' }), { id: null, code: 'invalid_id' }],
        ['fractional id', JSON.stringify({ type: 'subscribe', id: 1.5, channel: 'devices/sensor-a/commands' }), { id: null, code: 'invalid_id' }],
        ['object id', JSON.stringify({ type: 'subscribe', id: { n: 1 }, channel: 'devices/sensor-a/commands' }), { id: null, code: 'invalid_id' }],
        ['publish without data', JSON.stringify({ type: 'publish', id: 'd-1', channel: 'devices/sensor-a/telemetry' }), { id: 'd-1', code: 'invalid_message' }],
        ['channel missing', JSON.stringify({ type: 'subscribe', id: 'c-1' }), { id: 'c-1', code: 'invalid_message' }],
        ['channel not a string', JSON.stringify({ type: 'subscribe', id: 'c-2', channel: ['devices', 'sensor-a'] }), { id: 'c-2', code: 'invalid_message' }],
        ['upper-case channel', JSON.stringify({ type: 'subscribe', id: 'c-3', channel: 'devices/Sensor-A/commands' }), { id: 'c-3', code: 'invalid_channel' }],
        ['# not last', JSON.stringify({ type: 'subscribe', id: 'c-4', channel: 'devices/#/commands' }), { id: 'c-4', code: 'invalid_channel' }],
        ['nine segments', JSON.stringify({ type: 'subscribe', id: 'c-5', channel: 'a/b/c/d/e/f/g/h/i' }), { id: 'c-5', code: 'invalid_channel' }],
        ['publish to a wildcard', JSON.stringify({ type: 'publish', id: 'c-6', channel: 'devices/sensor-a/#', data: 1 }), { id: 'c-6', code: 'invalid_channel' }],
        ['publish with an empty segment', JSON.stringify({ type: 'publish', id: 'c-7', channel: 'devices//telemetry', data: 1 }), { id: 'c-7', code: 'invalid_channel' }],
        ['unsubscribe from an invalid channel', JSON.stringify({ type: 'unsubscribe', id: 'c-8', channel: 'devices/sensor-a/' }), { id: 'c-8', code: 'invalid_channel' }],
        ['auth without a token', JSON.stringify({ type: 'auth', id: 'x-1' }), { id: 'x-1', code: 'invalid_message' }],
        ['auth with a huge id', JSON.stringify({ type: 'auth', id: hugeId, token: 'x' }), { id: null, code: 'invalid_id' }],
        ['unsafe integer id', JSON.stringify({ type: 'subscribe', id: 2 ** 53, channel: 'devices/sensor-a/commands' }), { id: null, code: 'invalid_id' }],
        ['channel of 201 bytes', JSON.stringify({ type: 'subscribe', id: 'c-9', channel: `devices/${'x'.repeat(193)}` }), { id: 'c-9', code: 'invalid_channel' }],
        // About 10 KB: serialising this for subscribers used to overflow the stack and end the process.
        ['data nested 5000 deep', `{"type":"publish","id":"n-1","channel":"devices/sensor-a/commands","data":${'['.repeat(5000)}${']'.repeat(5000)}}`, { id: 'n-1', code: 'data_too_deep' }],
      ];

      for (const [label, payload, expected] of cases) {
        device.socket.send(payload, { binary: Buffer.isBuffer(payload) });
        const reply = await device.nextFrame();
        assert.deepEqual(errorOf(reply), { type: 'error', ...expected }, label);
      }

      assert.equal(device.isOpen, true);
      assert.deepEqual(await exchange(device, { type: 'subscribe', id: 'i'.repeat(64), channel: 'devices/sensor-a/commands' }), { type: 'subscribed', id: 'i'.repeat(64), channel: 'devices/sensor-a/commands' });
    } finally {
      await device.close();
    }

    const fresh = await connectDevice(server, sensorA);
    try {
      assert.deepEqual(await exchange(fresh, { type: 'publish', id: 1, channel: 'devices/sensor-a/telemetry', data: 'still serving' }), { type: 'published', id: 1, channel: 'devices/sensor-a/telemetry' });
      // The deepest data allowed still reaches a subscriber, serialised.
      const deepestAllowed = JSON.parse(`${'['.repeat(32)}${']'.repeat(32)}`) as unknown;
      assert.equal((await exchange(fresh, { type: 'subscribe', id: 2, channel: 'devices/sensor-a/commands' })).type, 'subscribed');
      fresh.send({ type: 'publish', id: 3, channel: 'devices/sensor-a/commands', data: deepestAllowed });
      const delivered = await fresh.nextFrame();
      assert.equal(delivered.type, 'message');
      assert.deepEqual(delivered.data, deepestAllowed);
      assert.deepEqual(await fresh.nextFrame(), { type: 'published', id: 3, channel: 'devices/sensor-a/commands' });
    } finally {
      await fresh.close();
    }
  });

  test('huge id is not echoed', stepTimeout, async () => {
    const device = await connectDevice(server, sensorA);
    const hugeId = 'h'.repeat(10_000);
    try {
      const raw = new Promise<string>((resolve) => device.socket.once('message', (data) => resolve(data.toString())));
      device.send({ type: 'publish', id: hugeId, channel: 'devices/sensor-a/telemetry', data: 1 });
      const text = await raw;

      assert.ok(!text.includes('h'.repeat(65)), `the error frame repeats the id (${text.length} characters)`);
      assert.deepEqual(errorOf(await device.nextFrame()), { type: 'error', id: null, code: 'invalid_id' });
    } finally {
      await device.close();
    }
  });

  test('narrowed token drops lost subscription', stepTimeout, async () => {
    const device = await connectDevice(server, narrowable);
    try {
      await exchange(device, { type: 'subscribe', id: 's-1', channel: 'devices/sensor-n/commands' });
      await exchange(device, { type: 'subscribe', id: 's-2', channel: 'devices/sensor-n/config' });
      const narrowScope = 'publish:devices/{client_id}/# subscribe:devices/{client_id}/commands';
      const narrower = await deviceToken(server, narrowable, narrowScope);

      device.send({ type: 'auth', id: 'r-1', token: narrower });
      const ok = await device.nextFrame();
      const dropped = await device.nextFrame();

      assert.equal(ok.type, 'auth_ok');
      assert.equal(ok.id, 'r-1');
      assert.equal(typeof ok.expires_at, 'number');
      assert.deepEqual(String(ok.scope).split(' ').sort(), narrowScope.split(' ').sort());
      assert.deepEqual(dropped, { type: 'unsubscribed', id: null, channel: 'devices/sensor-n/config', reason: 'forbidden' });

      server.running.publish('devices/sensor-n/config', 'lost');
      server.running.publish('devices/sensor-n/commands', 'kept');
      const next = await device.nextFrame();
      assert.equal(next.channel, 'devices/sensor-n/commands');
      assert.equal(next.data, 'kept');
      assert.deepEqual(errorOf(await exchange(device, { type: 'subscribe', id: 's-3', channel: 'devices/sensor-n/config' })), { type: 'error', id: 's-3', code: 'forbidden' });
    } finally {
      await device.close();
    }
  });

  test('publish-only token drops every subscription', stepTimeout, async () => {
    const device = await connectDevice(server, narrowable);
    try {
      await exchange(device, { type: 'subscribe', id: 's-1', channel: 'devices/sensor-n/commands' });
      await exchange(device, { type: 'subscribe', id: 's-2', channel: 'devices/sensor-n/config' });
      const publishOnly = await deviceToken(server, narrowable, 'publish:devices/{client_id}/#');

      device.send({ type: 'auth', token: publishOnly });
      const ok = await device.nextFrame();
      const droppedFirst = await device.nextFrame();
      const droppedSecond = await device.nextFrame();

      assert.equal(ok.type, 'auth_ok');
      assert.equal('id' in ok, false, 'auth_ok carries an id the request did not have');
      assert.equal(ok.scope, 'publish:devices/{client_id}/#');
      assert.deepEqual([droppedFirst, droppedSecond].map((frame) => [frame.type, frame.id, frame.reason, frame.channel]).sort(), [
        ['unsubscribed', null, 'forbidden', 'devices/sensor-n/commands'],
        ['unsubscribed', null, 'forbidden', 'devices/sensor-n/config'],
      ]);

      server.running.publish('devices/sensor-n/commands', 'lost');
      // The publish reply comes first: the command above was not delivered.
      assert.deepEqual(await exchange(device, { type: 'publish', id: 'p-1', channel: 'devices/sensor-n/telemetry', data: 1 }), { type: 'published', id: 'p-1', channel: 'devices/sensor-n/telemetry' });
    } finally {
      await device.close();
    }
  });

  test('auth with another device closes 4403', stepTimeout, async () => {
    const device = await connectDevice(server, sensorA);
    const foreign = await deviceToken(server, sensorB);

    device.send({ type: 'auth', id: 'r-1', token: foreign });
    const closed = await device.waitForClose();

    assert.deepEqual(closed, { code: 4403, reason: 'token_invalid' });
    assert.deepEqual(device.unreadFrames, []);
  });

  test('revoked connection cannot publish', stepTimeout, async () => {
    const victim = await addDevice(server, 'sensor-r');
    const watcher = await connectDevice(server, backend);
    const device = await connectDevice(server, victim);
    const deviceTcp = pauseReading(device);
    try {
      await exchange(watcher, { type: 'subscribe', id: 'w', channel: 'devices/#' });
      const removed = await runCli(server.dataDir, ['devices', 'remove', 'sensor-r']);
      assert.equal(removed.code, 0, removed.stderr);
      await waitFor(() => logEvents(server, 'connection.revoked').some((line) => line.connection_id === device.welcome.connection_id), 'the revocation to reach the connection');

      // The device has not read the close frame, so its side is still open and it can still send.
      device.send({ type: 'publish', id: 'late', channel: 'devices/sensor-r/telemetry', data: 'sent after revocation' });
      deviceTcp.resume();
      assert.deepEqual(await device.waitForClose(), { code: 4403, reason: 'token_revoked' });
      // The late frame precedes the client's close frame on the wire, so the server has read it by now.
      await waitFor(() => connectionClosed(server, device), 'the server to log the close');
      server.running.publish('devices/marker/commands', 'marker');

      const channels = await channelsUntil(watcher, 'devices/marker/commands');
      assert.deepEqual(channels, ['devices/marker/commands'], 'a revoked connection still published');
    } finally {
      deviceTcp.resume();
      await watcher.close();
      await device.close();
    }
  });
});

describe('subscription limit', () => {
  let server: TestServer;
  let backend: Credentials;

  before(async () => {
    server = await startTestServer({ maxSubscriptions: 3 });
    backend = await addDevice(server, 'backend', ['--scope', backendScope]);
  }, stepTimeout);

  after(async () => {
    await server?.close();
  });

  test('fourth subscription is refused', stepTimeout, async () => {
    const watcher = await connectDevice(server, backend);
    try {
      for (const [index, channel] of ['devices/one/#', 'devices/two/#', 'devices/three/#'].entries()) {
        assert.deepEqual(await exchange(watcher, { type: 'subscribe', id: index, channel }), { type: 'subscribed', id: index, channel });
      }

      assert.deepEqual(errorOf(await exchange(watcher, { type: 'subscribe', id: 'fourth', channel: 'devices/four/#' })), { type: 'error', id: 'fourth', code: 'too_many_subscriptions' });
      assert.equal(server.running.publish('devices/four/telemetry', 'refused'), 0);
      // Subscribing again to a held filter is a no-op, not a fourth subscription.
      assert.deepEqual(await exchange(watcher, { type: 'subscribe', id: 'again', channel: 'devices/one/#' }), { type: 'subscribed', id: 'again', channel: 'devices/one/#' });
      assert.equal(watcher.isOpen, true);

      await exchange(watcher, { type: 'unsubscribe', id: 'free', channel: 'devices/two/#' });
      assert.deepEqual(await exchange(watcher, { type: 'subscribe', id: 'retry', channel: 'devices/four/#' }), { type: 'subscribed', id: 'retry', channel: 'devices/four/#' });
      assert.equal(server.running.publish('devices/four/telemetry', 'accepted'), 1);
      assert.equal((await watcher.nextFrame()).data, 'accepted');
    } finally {
      await watcher.close();
    }
  });

  test('limit counts per connection', stepTimeout, async () => {
    const first = await connectDevice(server, backend);
    const second = await connectDevice(server, backend);
    try {
      for (const channel of ['devices/one/#', 'devices/two/#', 'devices/three/#']) {
        assert.equal((await exchange(first, { type: 'subscribe', id: 1, channel })).type, 'subscribed');
      }

      assert.equal((await exchange(second, { type: 'subscribe', id: 2, channel: 'devices/four/#' })).type, 'subscribed');
    } finally {
      await first.close();
      await second.close();
    }
  });
});

describe('message rate', () => {
  const ratePerSecond = 5;
  // Far above five times the rate, so the abuse score passes its threshold within one flood.
  const floodFrames = 400;
  // Long enough for the bucket to refill completely at `ratePerSecond`.
  const refillWaitMs = 1500;
  let server: TestServer;
  let backend: Credentials;

  before(async () => {
    server = await startTestServer({ messageRatePerSecond: ratePerSecond });
    backend = await addDevice(server, 'backend', ['--scope', backendScope]);
  }, stepTimeout);

  after(async () => {
    await server?.close();
  });

  test('burst gets rate_limited and stays open', stepTimeout, async () => {
    const socket = await connectDevice(server, backend);
    try {
      for (let index = 0; index < 2 * ratePerSecond; index += 1) {
        socket.send({ type: 'subscribe', id: index, channel: `devices/burst-${index}/#` });
      }
      const replies: Frame[] = [];
      for (let index = 0; index < 2 * ratePerSecond; index += 1) {
        replies.push(await socket.nextFrame());
      }

      // The bucket starts full, so the first `ratePerSecond` frames always pass.
      assert.deepEqual(replies.slice(0, ratePerSecond).map((frame) => [frame.type, frame.id]), Array.from({ length: ratePerSecond }, (_value, index) => ['subscribed', index]));
      const limited = replies.filter((frame) => frame.type === 'error');
      assert.ok(limited.length >= 1, 'no frame of the burst was rate limited');
      // A refused frame's id is echoed, so the client knows which request to send again.
      for (const frame of limited) {
        assert.equal(frame.code, 'rate_limited');
        assert.equal(typeof frame.id, 'number');
        assert.ok((frame.id as number) >= ratePerSecond, `frame ${String(frame.id)} was refused from a full bucket`);
      }
      assert.equal(socket.isOpen, true);

      // Tokens refill at `ratePerSecond`, and a bounded retry waits for one without measuring time.
      let reply: Frame | undefined;
      for (let attempt = 0; attempt < 40 && reply?.type !== 'subscribed'; attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        reply = await exchange(socket, { type: 'subscribe', id: 'after', channel: 'devices/after/#' });
      }
      assert.deepEqual(reply, { type: 'subscribed', id: 'after', channel: 'devices/after/#' });
      assert.equal(logEvents(server, 'connection.rate_abuse').length, 0);
    } finally {
      await socket.close();
    }
  });

  test('flood closes with 1008 rate_limited', stepTimeout, async () => {
    const bystander = await connectDevice(server, backend);
    const flooder = await connectDevice(server, backend);
    try {
      for (let index = 0; index < floodFrames; index += 1) {
        flooder.send({ type: 'publish', id: index, channel: 'devices/flood/commands', data: index });
      }
      const closed = await flooder.waitForClose();

      assert.deepEqual(closed, { code: 1008, reason: 'rate_limited' });
      assert.ok(logEvents(server, 'connection.rate_abuse').some((line) => line.connection_id === flooder.welcome.connection_id), 'no connection.rate_abuse line for the flooder');

      // The limit is per connection: another socket of the same client still works, and so do new ones.
      assert.deepEqual(await exchange(bystander, { type: 'subscribe', id: 'b', channel: 'devices/flood/#' }), { type: 'subscribed', id: 'b', channel: 'devices/flood/#' });
      const fresh = await connectDevice(server, backend);
      assert.deepEqual(await exchange(fresh, { type: 'publish', id: 'f', channel: 'devices/flood/commands', data: 'after' }), { type: 'published', id: 'f', channel: 'devices/flood/commands' });
      assert.equal((await bystander.nextFrame()).data, 'after');
      await fresh.close();
    } finally {
      await bystander.close();
      await flooder.close();
    }
  });

  test('rate abuse logged once', stepTimeout, async () => {
    const flooder = await connectDevice(server, backend);
    for (let index = 0; index < floodFrames; index += 1) {
      flooder.send({ type: 'subscribe', id: index, channel: 'devices/flood/#' });
    }
    await flooder.waitForClose();
    await waitFor(() => connectionClosed(server, flooder), 'the server to log the close');

    const lines = logEvents(server, 'connection.rate_abuse').filter((line) => line.connection_id === flooder.welcome.connection_id);
    assert.equal(lines.length, 1, `one abusive connection logged ${lines.length} connection.rate_abuse lines`);
  });

  test('closing connection cannot publish', stepTimeout, async () => {
    const watcher = await connectDevice(server, backend);
    const flooder = await connectDevice(server, backend);
    const flooderTcp = pauseReading(flooder);
    try {
      await exchange(watcher, { type: 'subscribe', id: 'w', channel: 'devices/#' });
      for (let index = 0; index < floodFrames; index += 1) {
        flooder.send({ type: 'publish', id: index, channel: 'devices/flood/commands', data: index });
      }
      await waitFor(() => logEvents(server, 'connection.rate_abuse').some((line) => line.connection_id === flooder.welcome.connection_id), 'the server to decide on the close');

      // The flooder has not read the close frame, so its side is still open. After a refill its
      // next frame passes the rate limiter, which makes the close decision the only thing left to stop it.
      await new Promise((resolve) => setTimeout(resolve, refillWaitMs));
      flooder.send({ type: 'publish', id: 'late', channel: 'devices/late/commands', data: 'sent after the close decision' });
      flooderTcp.resume();
      assert.equal((await flooder.waitForClose()).code, 1008);
      // The late frame precedes the client's close frame on the wire, so the server has read it by now.
      await waitFor(() => connectionClosed(server, flooder), 'the server to log the close');
      server.running.publish('devices/marker/commands', 'marker');

      const channels = await channelsUntil(watcher, 'devices/marker/commands');
      assert.ok(!channels.includes('devices/late/commands'), `a connection closed for rate abuse still published: ${channels.join(', ')}`);
    } finally {
      flooderTcp.resume();
      await watcher.close();
      await flooder.close();
    }
  });
});
