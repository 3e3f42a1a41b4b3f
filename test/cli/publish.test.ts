// `portcullis publish` through the admin socket of a real running server, and its usage errors.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { addDevice, deviceToken, runCli, startTestServer, temporaryDataDir, type TestServer } from '../support/server.ts';
import { openDeviceSocket } from '../support/websocket.ts';

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server?.close();
});

test('publish reaches a subscriber as the operator', async () => {
  const device = await addDevice(server, 'watcher', ['--scope', 'subscribe:alerts/#']);
  const socket = await openDeviceSocket(server, { clientId: 'watcher', accessToken: await deviceToken(server, device) });
  try {
    socket.send({ type: 'subscribe', id: 1, channel: 'alerts/#' });
    assert.equal((await socket.nextFrame()).type, 'subscribed');

    const result = await runCli(server.dataDir, ['publish', 'alerts/fire', '{"level":3}']);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'delivered to 1 subscriber(s) on this server\n');
    const frame = await socket.nextFrame();
    assert.equal(frame.type, 'message');
    assert.equal(frame.channel, 'alerts/fire');
    assert.deepEqual(frame.data, { level: 3 });
    assert.deepEqual(frame.publisher, { client_id: 'portcullis', sub: 'operator' });
  } finally {
    await socket.close();
  }
});

test('embedded publish() reaches a subscriber as the operator', async () => {
  const device = await addDevice(server, 'embedded-watcher', ['--scope', 'subscribe:alerts/#']);
  const socket = await openDeviceSocket(server, { clientId: 'embedded-watcher', accessToken: await deviceToken(server, device) });
  try {
    socket.send({ type: 'subscribe', id: 1, channel: 'alerts/#' });
    assert.equal((await socket.nextFrame()).type, 'subscribed');

    assert.equal(server.running.publish('alerts/embedded', { from: 'code' }), 1);
    const frame = await socket.nextFrame();
    assert.equal(frame.channel, 'alerts/embedded');
    assert.deepEqual(frame.data, { from: 'code' });
    assert.deepEqual(frame.publisher, { client_id: 'portcullis', sub: 'operator' });
  } finally {
    await socket.close();
  }
});

test('embedded publish() rejects bad input', () => {
  assert.throws(() => server.running.publish('Alerts/Fire', 1), (error: unknown) => (error as { code?: string }).code === 'invalid_channel');
  assert.throws(() => server.running.publish('alerts/fire', JSON.parse(`${'['.repeat(40)}${']'.repeat(40)}`)), (error: unknown) => (error as { code?: string }).code === 'data_too_deep');
});

test('publish without subscribers reports 0', async () => {
  const result = await runCli(server.dataDir, ['publish', 'alerts/nobody', '[1, 2]']);

  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, 'delivered to 0 subscriber(s) on this server\n');
  const line = server.logs.map((entry) => JSON.parse(entry) as Record<string, unknown>)
    .find((entry) => entry.event === 'channel.published' && entry.channel === 'alerts/nobody');
  assert.equal(line?.client_id, 'portcullis');
});

const usageErrors: Array<[string, string[], RegExp]> = [
  ['invalid JSON', ['publish', 'alerts/fire', '{level:3}'], /not valid JSON/],
  ['invalid channel', ['publish', 'Alerts/Fire', '{}'], /Channel "Alerts\/Fire" is not valid/],
  ['channel filter', ['publish', 'alerts/#', '{}'], /is not valid/],
  ['missing data', ['publish', 'alerts/fire'], /Give a channel and the data/],
  ['extra argument', ['publish', 'alerts/fire', '1', '2'], /Give a channel and the data/],
  ['data nested too deep', ['publish', 'alerts/fire', `${'['.repeat(5000)}${']'.repeat(5000)}`], /deeper than 32 levels/],
];
for (const [name, args, message] of usageErrors) {
  test(`${name} exits 2`, async () => {
    const result = await runCli(server.dataDir, args);

    assert.equal(result.code, 2);
    assert.match(result.stderr, message);
    assert.equal(result.stderr.split('\n').filter((line) => line.startsWith('portcullis publish: ')).length, 1, 'one error line');
    assert.equal(result.stdout, '');
  });
}

test('data over max payload exits 2', async () => {
  const data = JSON.stringify('x'.repeat(server.options.maxPayloadBytes));

  const result = await runCli(server.dataDir, ['publish', 'alerts/fire', data]);

  assert.equal(result.code, 2);
  assert.match(result.stderr, /payload_too_large/);
});

test('no running server exits 1', async () => {
  const result = await runCli(temporaryDataDir(), ['publish', 'alerts/fire', '{}']);

  assert.equal(result.code, 1);
  assert.match(result.stderr, /No server is running on/);
  assert.equal(result.stdout, '');
});
