// The device SDK against real servers over real TLS: connect, in-band refresh, stopping on
// refused credentials and on revocation, and what it logs.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { exportJWK, generateKeyPair } from 'jose';

import { DeviceClient } from '../../src/client/device.ts';
import { addDevice, runCli, startTestServer, temporaryDataDir, type TestServer } from '../support/server.ts';
import { clientOptions, logLines, opened, Recorder, stopped, tokensIssued, waitForLog } from './recorder.ts';

let server: TestServer;
let shortLived: TestServer;

before(async () => {
  [server, shortLived] = await Promise.all([startTestServer(), startTestServer({ accessTokenTtlSeconds: 30 })]);
});

after(async () => {
  await Promise.all([server?.close(), shortLived?.close()]);
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

test('app frames reach onMessage', async () => {
  const device = await addDevice(server, 'sdk-echo');
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } }));
  try {
    assert.equal(client.send('too early'), false);
    client.connect();
    await opened(recorder);

    assert.equal(client.send('hello through the sdk'), true);
    await recorder.until(() => recorder.messages.length > 0, 'echo');
    assert.deepEqual(recorder.messages, ['hello through the sdk']);
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
    assert.equal(client.send('still the same socket'), true);
    await recorder.until(() => recorder.messages.includes('still the same socket'), 'echo after refresh');
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
