// A server restarted on the same data directory and port keeps every credential a device holds:
// issued tokens, the client secret, the token signing key and the development CA.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { decodeProtectedHeader } from 'jose';

import { rawHandshake } from '../support/raw-handshake.ts';
import { probeDeviceConnection } from '../support/websocket.ts';
import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';


async function jwksKeyIds(server: TestServer): Promise<string[]> {
  const response = await server.fetch(`${server.url}/oauth/jwks`);
  assert.equal(response.status, 200);
  const { keys } = await response.json() as { keys: { kid: string }[] };
  return keys.map((key) => key.kid).sort();
}

let first: TestServer;
let second: TestServer;
let device: { client_id: string; client_secret: string };
let tokenBeforeRestart: string;
let keyIdsBeforeRestart: string[];

before(async () => {
  first = await startTestServer();
  device = await addDevice(first, 'restart-device');
  tokenBeforeRestart = await deviceToken(first, device);
  keyIdsBeforeRestart = await jwksKeyIds(first);
  await first.close();

  second = await startTestServer({ dataDir: first.dataDir, port: first.port });
});

after(async () => {
  await second?.close();
});

test('restart keeps data directory and port', () => {
  assert.equal(second.dataDir, first.dataDir);
  assert.equal(second.port, first.port);
  assert.equal(second.url, first.url);
});

test('token from before restart connects', async () => {
  const outcome = await probeDeviceConnection(second.port, first.caPem, device.client_id, tokenBeforeRestart);
  assert.equal(outcome.status, 101, `rejected with ${outcome.error}`);
  assert.equal(outcome.welcome?.type, 'welcome');
  assert.equal(outcome.welcome?.sub, device.client_id);
  assert.equal(outcome.welcome?.client_id, device.client_id);
});

test('same secret still gets tokens', async () => {
  const token = await deviceToken(second, device);
  assert.notEqual(token, tokenBeforeRestart);
  const outcome = await rawHandshake({ port: second.port, ca: first.caPem, headers: { Authorization: `Bearer ${token}`, 'X-Client-Id': device.client_id } });
  assert.equal(outcome.status, 101);
});

test('jwks key ids unchanged', async () => {
  const keyIdsAfterRestart = await jwksKeyIds(second);
  assert.deepEqual(keyIdsAfterRestart, keyIdsBeforeRestart);
  assert.ok(keyIdsAfterRestart.includes(decodeProtectedHeader(tokenBeforeRestart).kid ?? ''), 'the old token names a key the JWKS does not publish');
});

test('development CA unchanged', () => {
  assert.equal(second.caPem, first.caPem);
  assert.equal(second.running.caFile, first.running.caFile);
});
