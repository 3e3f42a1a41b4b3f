// The device SDK against real servers over real TLS: connect, channel requests, in-band refresh,
// stopping on refused credentials and on revocation, and what it logs.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { exportJWK, generateKeyPair } from 'jose';

import { DeviceClient, type ChannelMessage } from '../../src/client/device.ts';
import { addDevice, runCli, startTestServer, temporaryDataDir, type TestServer } from '../support/server.ts';
import { clientOptions, logLines, opened, Recorder, stopped, tokensIssued, waitForLog } from './recorder.ts';

let server: TestServer;
let shortLived: TestServer;
// Five frames per second per connection, so a test can reach the limit with a few requests.
let slow: TestServer;

before(async () => {
  [server, shortLived, slow] = await Promise.all([startTestServer(), startTestServer({ accessTokenTtlSeconds: 30 }), startTestServer({ messageRatePerSecond: 5 })]);
});

after(async () => {
  await Promise.all([server?.close(), shortLived?.close(), slow?.close()]);
});

test('connects and gets welcome', async () => {
  const device = await addDevice(server, 'sdk-welcome');
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } }));
  try {
    client.connect();
    await opened(recorder);

    assert.deepEqual(recorder.states, ['connecting', 'open']);
    const { welcome } = recorder.last!;
    assert.equal(welcome?.sub, device.client_id);
    assert.equal(welcome?.clientId, device.client_id);
    const accepted = await waitForLog(server, (line) => line.event === 'handshake.accepted' && line.connection_id === welcome?.connectionId, 'accepted handshake');
    assert.equal(accepted.kind, 'device');
    assert.equal(tokensIssued(server, device.client_id, 'client_credentials'), 1);
  } finally {
    await client.close();
  }
  assert.equal(recorder.last?.state, 'stopped');
  assert.equal(recorder.last?.reason, 'closed');
});

test('publish reaches own subscription', async () => {
  const device = await addDevice(server, 'sdk-round-trip');
  const commands = `devices/${device.client_id}/commands`;
  const recorder = new Recorder();
  const received: ChannelMessage[] = [];
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } }));
  try {
    client.connect();
    await opened(recorder);
    await client.subscribe(commands, (message) => recorder.record(() => received.push(message)));
    await client.publish(commands, { text: 'hello through the sdk' });
    await recorder.until(() => received.length > 0, 'own message');

    assert.equal(received.length, 1);
    assert.equal(received[0].channel, commands);
    assert.deepEqual(received[0].data, { text: 'hello through the sdk' });
    assert.deepEqual(received[0].publisher, { clientId: device.client_id, sub: device.client_id });
    assert.equal(typeof received[0].timestamp, 'number');
    assert.deepEqual(recorder.messages, received, 'onMessage saw another set of messages than the subscription callback');
    assert.deepEqual(recorder.subscribed, [{ channel: commands, restored: false }]);
    assert.deepEqual(client.subscriptions, [commands]);
  } finally {
    await client.close();
  }
});

test('operator command reaches device', async () => {
  const device = await addDevice(server, 'sdk-command');
  const commands = `devices/${device.client_id}/commands`;
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } }));
  try {
    // Made before connect(), the request waits for the first connection.
    const subscribed = client.subscribe(commands);
    client.connect();
    await subscribed;
    const delivered = server.running.publish(commands, { action: 'reboot', delay_s: 5 });
    await recorder.until(() => recorder.messages.length > 0, 'command');

    assert.equal(delivered, 1);
    assert.deepEqual(recorder.messages.map((message) => [message.channel, message.data, message.publisher]), [
      [commands, { action: 'reboot', delay_s: 5 }, { clientId: 'portcullis', sub: 'operator' }],
    ]);
  } finally {
    await client.close();
  }
});

test('channel outside scope is forbidden', async () => {
  const device = await addDevice(server, 'sdk-forbidden');
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } }));
  try {
    client.connect();
    await opened(recorder);

    await assert.rejects(client.subscribe('devices/someone-else/commands'), { name: 'PortcullisClientError', code: 'forbidden', retryable: false });
    // The default scope lets a device publish its telemetry but not subscribe to it.
    await assert.rejects(client.subscribe(`devices/${device.client_id}/telemetry`), { code: 'forbidden' });
    await assert.rejects(client.publish('devices/someone-else/telemetry', { celsius: 21 }), { code: 'forbidden' });
    assert.deepEqual(client.subscriptions, []);

    await client.publish(`devices/${device.client_id}/telemetry`, { celsius: 21 });
    assert.deepEqual(recorder.states, ['connecting', 'open'], 'a rejected request ended the connection');
  } finally {
    await client.close();
  }
});

test('invalid requests rejected before sending', async () => {
  const device = await addDevice(server, 'sdk-invalid');
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } }));
  const telemetry = `devices/${device.client_id}/telemetry`;
  try {
    client.connect();
    await opened(recorder);

    const cases: Array<[what: string, request: () => Promise<void>, code: string]> = [
      ['upper-case channel', () => client.subscribe('Devices/x'), 'invalid_channel'],
      ['# before the end', () => client.subscribe('devices/#/commands'), 'invalid_channel'],
      ['wildcard in publish', () => client.publish('devices/*/telemetry', 1), 'invalid_channel'],
      ['undefined data', () => client.publish(telemetry, undefined), 'invalid_message'],
      ['BigInt data', () => client.publish(telemetry, { reading: 10n }), 'invalid_message'],
      // The server closes the connection with 1009 on a frame over its 64 KiB limit.
      ['70 KB of data', () => client.publish(telemetry, 'x'.repeat(70_000)), 'payload_too_large'],
    ];
    for (const [what, request, code] of cases) {
      await assert.rejects(request(), { code }, what);
    }

    await client.publish(telemetry, 'x'.repeat(60_000));
    assert.deepEqual(recorder.states, ['connecting', 'open'], 'a rejected request ended the connection');
  } finally {
    await client.close();
  }
});

test('requests after close reject', async () => {
  const device = await addDevice(server, 'sdk-after-close');
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } }));
  client.connect();
  await opened(recorder);
  // close() settles the request at once, before any reply can arrive.
  const pending = assert.rejects(client.subscribe(`devices/${device.client_id}/commands`), { code: 'not_connected' });
  await client.close();
  await pending;

  await assert.rejects(client.subscribe(`devices/${device.client_id}/commands`), { code: 'not_connected' });
  await assert.rejects(client.publish(`devices/${device.client_id}/telemetry`, 1), { code: 'not_connected' });
  assert.deepEqual(client.subscriptions, []);
});

test('paced requests stay under rate limit', async () => {
  const device = await addDevice(slow, 'sdk-paced');
  const recorder = new Recorder();
  const errors: string[] = [];
  const client = new DeviceClient(clientOptions(slow, device.client_id, recorder, {
    credentials: { clientSecret: device.client_secret },
    maxMessagesPerSecond: 4,
    onError: (error) => errors.push(error.code),
  }));
  try {
    client.connect();
    await opened(recorder);
    const requests = Array.from({ length: 10 }, (_, index) => client.publish(`devices/${device.client_id}/telemetry`, { index }));
    await Promise.all(requests);

    assert.deepEqual(errors, []);
  } finally {
    await client.close();
  }
});

test('unpaced burst rejects refused publishes', async () => {
  const device = await addDevice(slow, 'sdk-unpaced');
  const recorder = new Recorder();
  const errors: string[] = [];
  const client = new DeviceClient(clientOptions(slow, device.client_id, recorder, {
    credentials: { clientSecret: device.client_secret },
    maxMessagesPerSecond: 1000,
    requestTimeoutMs: 2000,
    onError: (error) => errors.push(error.code),
  }));
  try {
    client.connect();
    await opened(recorder);
    const requests = Array.from({ length: 10 }, (_, index) => client.publish(`devices/${device.client_id}/telemetry`, { index }));
    const outcomes = await Promise.all(requests.map((request) => request.then(() => 'published', (error: { code: string; retryable: boolean }) => `${error.code}:${error.retryable}`)));

    // The server echoes the id of a frame it rejected past its rate, so that request fails at once
    // with a retryable code instead of timing out.
    const limited = outcomes.filter((outcome) => outcome === 'rate_limited:true').length;
    assert.ok(limited > 0, `every request was published: ${outcomes.join(' ')}`);
    assert.equal(outcomes.filter((outcome) => outcome === 'published').length + limited, outcomes.length, outcomes.join(' '));
    assert.deepEqual(errors, [], 'an error frame matched no request');
    assert.deepEqual(recorder.states, ['connecting', 'open'], 'the rate limit closed the connection');
  } finally {
    await client.close();
  }
});

test('unpaced subscribes are sent again', async () => {
  const device = await addDevice(slow, 'sdk-unpaced-subscriber', ['--scope', 'subscribe:devices/{client_id}/#']);
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(slow, device.client_id, recorder, {
    credentials: { clientSecret: device.client_secret },
    maxMessagesPerSecond: 1000,
    requestTimeoutMs: 10_000,
  }));
  try {
    client.connect();
    await opened(recorder);
    const channels = Array.from({ length: 8 }, (_, index) => `devices/${device.client_id}/channel-${index}`);
    const outcomes = await Promise.all(channels.map((channel) => client.subscribe(channel).then(() => 'subscribed', (error: { code: string }) => error.code)));

    // More subscribes than the server's bucket holds: the refused ones are sent again until confirmed.
    assert.deepEqual(outcomes, channels.map(() => 'subscribed'));
  } finally {
    await client.close();
  }
});

test('private_key_jwt device connects', async () => {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-sdk-key-'));
  const keyFile = path.join(keyDir, 'jwk.json');
  fs.writeFileSync(keyFile, JSON.stringify(await exportJWK(publicKey)));
  const added = await runCli(server.dataDir, ['devices', 'add', 'sdk-key-device', '--public-key', keyFile]);
  fs.rmSync(keyDir, { recursive: true, force: true });
  assert.equal(added.code, 0, added.stderr);

  const recorder = new Recorder();
  // A KeyObject, the form a device usually loads from a PEM file.
  const credentials = { privateKey: crypto.KeyObject.from(privateKey) };
  const client = new DeviceClient(clientOptions(server, 'sdk-key-device', recorder, { credentials }));
  try {
    client.connect();
    await opened(recorder);
    assert.equal(recorder.last?.welcome?.clientId, 'sdk-key-device');
  } finally {
    await client.close();
  }
});

test('wrong secret stops without a socket', async () => {
  const device = await addDevice(server, 'sdk-wrong-secret');
  const logStart = server.logs.length;
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: `${device.client_secret}x` } }));
  try {
    client.connect();
    await stopped(recorder);
  } finally {
    await client.close();
  }

  assert.deepEqual(recorder.changes, [{ state: 'connecting', reason: 'started' }, { state: 'stopped', reason: 'invalid_client' }]);
  assert.equal(logLines(server, logStart).filter((line) => String(line.event).startsWith('handshake.')).length, 0);
});

test('fresh token refused stops at 401', async () => {
  // The second server gets a copy of the first one's TLS files, so one CA serves both. Its own
  // signing keys and public URL make it reject the first server's tokens as token_invalid, and a
  // new token would fail the same way.
  const device = await addDevice(server, 'sdk-foreign-token');
  const foreignDataDir = temporaryDataDir();
  fs.copyFileSync(path.join(server.dataDir, 'ca.pem'), path.join(foreignDataDir, 'ca.pem'));
  fs.cpSync(path.join(server.dataDir, 'tls'), path.join(foreignDataDir, 'tls'), { recursive: true });
  const foreign = await startTestServer({ dataDir: foreignDataDir });
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, {
    url: `wss://localhost:${foreign.port}/ws`,
    credentials: { clientSecret: device.client_secret },
  }));
  try {
    client.connect();
    await stopped(recorder);
  } finally {
    await client.close();
    await foreign.close();
  }

  assert.deepEqual(recorder.last, { state: 'stopped', reason: 'token_invalid', status: 401 });
  assert.equal(recorder.states.includes('reconnecting'), false);
  assert.equal(tokensIssued(server, device.client_id, 'client_credentials'), 1);
  const rejected = logLines(foreign).filter((line) => line.event === 'handshake.rejected');
  assert.deepEqual(rejected.map((line) => [line.code, line.client_id]), [['token_invalid', device.client_id]]);
});

test('refreshes in band while open', async () => {
  const device = await addDevice(shortLived, 'sdk-in-band');
  const recorder = new Recorder();
  // With 30 s tokens and a 27 s margin, the refresh is due 3 s after each token arrives.
  const client = new DeviceClient(clientOptions(shortLived, device.client_id, recorder, {
    credentials: { clientSecret: device.client_secret },
    refreshMarginSeconds: 27,
  }));
  try {
    client.connect();
    await opened(recorder);
    const welcome = recorder.last!.welcome!;
    await recorder.until(() => recorder.refreshedAt.length >= 2, 'two in-band refreshes');

    assert.deepEqual(recorder.states, ['connecting', 'open']);
    assert.ok(recorder.refreshedAt[0] > welcome.expiresAt, 'the first auth_ok did not move the expiry');
    assert.ok(recorder.refreshedAt[1] > recorder.refreshedAt[0], 'the second auth_ok did not move the expiry');
    const refreshed = logLines(shortLived).filter((line) => line.event === 'connection.refreshed' && line.connection_id === welcome.connectionId);
    assert.ok(refreshed.length >= 2, `the server logged ${refreshed.length} refreshes of the connection`);
    const commands = `devices/${device.client_id}/commands`;
    await client.subscribe(commands);
    await client.publish(commands, 'still the same socket');
    await recorder.until(() => recorder.messages.some((message) => message.data === 'still the same socket'), 'message after refresh');
    assert.deepEqual(recorder.states, ['connecting', 'open']);
  } finally {
    await client.close();
  }
});

test('removed device stops with 4403', async () => {
  const device = await addDevice(server, 'sdk-removed');
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } }));
  try {
    client.connect();
    await opened(recorder);
    const removed = await runCli(server.dataDir, ['devices', 'remove', device.client_id]);
    assert.equal(removed.code, 0, removed.stderr);
    await stopped(recorder);
  } finally {
    await client.close();
  }

  assert.deepEqual(recorder.states, ['connecting', 'open', 'stopped']);
  assert.deepEqual(recorder.last, { state: 'stopped', reason: 'token_revoked', closeCode: 4403 });

  // Another device's full connect gives a reconnect time to show up; none does.
  const witness = await addDevice(server, 'sdk-removed-witness');
  const witnessRecorder = new Recorder();
  const witnessClient = new DeviceClient(clientOptions(server, witness.client_id, witnessRecorder, { credentials: { clientSecret: witness.client_secret } }));
  witnessClient.connect();
  await opened(witnessRecorder);
  await witnessClient.close();
  const handshakes = logLines(server).filter((line) => String(line.event).startsWith('handshake.') && line.client_id === device.client_id);
  assert.equal(handshakes.length, 1);
  assert.equal(recorder.changes.length, 3);
});

test('logs and states hold no secret', async () => {
  const device = await addDevice(server, 'sdk-canary');
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } }));
  try {
    client.connect();
    await opened(recorder);
    await client.refresh();
  } finally {
    await client.close();
  }

  const reported = [...recorder.logLines, JSON.stringify(recorder.changes)].join('\n');
  assert.ok(recorder.logLines.length > 0, 'the client logged nothing');
  assert.equal(reported.includes(device.client_secret), false, 'the client secret was logged');
  assert.doesNotMatch(reported, /eyJ[\w-]+\.[\w-]+\./, 'a JWT was logged');
});
