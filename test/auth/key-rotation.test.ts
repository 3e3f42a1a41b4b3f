import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { decodeProtectedHeader } from 'jose';

import { rawHandshake } from '../support/raw-handshake.ts';
import { addDevice, deviceToken, runCli, startTestServer, type TestServer } from '../support/server.ts';
import { commandsChannel, deviceRoundTrip, openDeviceSocket } from '../support/websocket.ts';

let server: TestServer;
let device: { client_id: string; client_secret: string };

before(async () => {
  // A short token lifetime and no leeway let the retired key leave the JWKS within the test.
  server = await startTestServer({ accessTokenTtlSeconds: 20, clockLeewaySeconds: 0 });
  device = await addDevice(server, 'rotating-device');
});
after(async () => {
  await server.close();
});

async function publishedKids(): Promise<string[]> {
  const response = await server.fetch(`${server.url}/oauth/jwks`);
  const { keys } = await response.json() as { keys: Array<{ kid: string }> };
  return keys.map((key) => key.kid);
}

test('rotation keeps old and new tokens working', async () => {
  const oldToken = await deviceToken(server, device);
  const oldKid = decodeProtectedHeader(oldToken).kid!;
  const liveSocket = await openDeviceSocket(server, { clientId: device.client_id, accessToken: oldToken });

  const rotated = await runCli(server.dataDir, ['keys', 'rotate']);
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.match(rotated.stdout, /signs with it now/);

  const newToken = await deviceToken(server, device);
  const newKid = decodeProtectedHeader(newToken).kid!;
  assert.notEqual(newKid, oldKid);

  const kids = await publishedKids();
  assert.equal(kids[0], newKid);
  assert.ok(kids.includes(oldKid));

  for (const token of [oldToken, newToken]) {
    const response = await rawHandshake({ port: server.port, ca: server.caPem, headers: { Authorization: `Bearer ${token}`, 'X-Client-Id': device.client_id } });
    assert.equal(response.status, 101);
  }

  // Rotation retired the key that signed this socket's token, which must not cut the socket off.
  const message = await deviceRoundTrip(liveSocket, 'still here');
  assert.equal(message.channel, commandsChannel(device.client_id));
  assert.equal(message.data, 'still here');
  await liveSocket.close();
});

test('keys list shows retired key', async () => {
  const listed = await runCli(server.dataDir, ['keys', 'list', '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  const keys = JSON.parse(listed.stdout) as Array<{ kid: string; status: string }>;
  assert.equal(keys.filter((key) => key.status === 'active').length, 1);
  assert.ok(keys.some((key) => key.status === 'retired'));
  assert.ok(!listed.stdout.includes('"d"'));
});

test('retired key leaves after its tokens expire', { timeout: 90_000 }, async () => {
  const kidsBefore = await publishedKids();
  assert.equal(kidsBefore.length, 2);
  const [activeKid, retiredKid] = kidsBefore;

  let kids = kidsBefore;
  for (let attempt = 0; attempt < 60 && kids.includes(retiredKid); attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    kids = await publishedKids();
  }

  assert.deepEqual(kids, [activeKid]);
});
