// A backend sends commands to devices through POST /api/publish. Each device subscribes to its own
// commands channel and receives only the commands addressed to it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { openDeviceSocket, type Frame, type GatewaySocket } from '../support/websocket.ts';

const backendId = 'dispatcher';
// A safety stop for each step. No assertion depends on how long anything took.
const stepTimeout = { timeout: 60_000 };

let server: TestServer;
let backendToken: string;
let pumpOne: GatewaySocket;
let pumpTwo: GatewaySocket;

/** Publishes through the backend API with the backend's token and returns the status and body. */
async function publishThroughApi(channel: string, data: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await server.fetch(`${server.url}/api/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${backendToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
  return { status: response.status, body: await response.json() as Record<string, unknown> };
}

/** Opens a socket for a device with its default scopes and subscribes it to its commands channel. */
async function connectPump(clientId: string): Promise<GatewaySocket> {
  const device = await addDevice(server, clientId);
  const socket = await openDeviceSocket(server, { clientId, accessToken: await deviceToken(server, device) });
  socket.send({ type: 'subscribe', id: 'commands', channel: `devices/${clientId}/commands` });
  assert.deepEqual(await socket.nextFrame(), { type: 'subscribed', id: 'commands', channel: `devices/${clientId}/commands` });
  return socket;
}

function assertCommand(frame: Frame, channel: string, data: unknown): void {
  assert.equal(frame.type, 'message');
  assert.equal(frame.channel, channel);
  assert.deepEqual(frame.data, data);
  assert.deepEqual(frame.publisher, { client_id: backendId, sub: backendId });
  assert.ok(Number.isInteger(frame.timestamp), `timestamp ${String(frame.timestamp)} is not epoch milliseconds`);
}

before(async () => {
  server = await startTestServer();
  const backend = await addDevice(server, backendId, ['--scope', 'publish:devices/*/commands']);
  backendToken = await deviceToken(server, backend);
  pumpOne = await connectPump('pump-1');
  pumpTwo = await connectPump('pump-2');
}, stepTimeout);

after(async () => {
  await pumpOne?.close();
  await pumpTwo?.close();
  await server?.close();
});

test('command reaches only its device', stepTimeout, async () => {
  const first = await publishThroughApi('devices/pump-1/commands', { action: 'start', rpm: 1200 });
  assert.equal(first.status, 202);
  assert.deepEqual(first.body, { channel: 'devices/pump-1/commands', delivered: 1 });
  assertCommand(await pumpOne.nextFrame(), 'devices/pump-1/commands', { action: 'start', rpm: 1200 });

  const followUp = await publishThroughApi('devices/pump-2/commands', { action: 'stop' });
  assert.equal(followUp.status, 202);
  assert.deepEqual(followUp.body, { channel: 'devices/pump-2/commands', delivered: 1 });
  // Pump 2 was listening all along: the first frame it gets is the command addressed to it.
  assertCommand(await pumpTwo.nextFrame(), 'devices/pump-2/commands', { action: 'stop' });

  const third = await publishThroughApi('devices/pump-1/commands', { action: 'status' });
  assert.equal(third.status, 202);
  // Likewise pump 1 did not get pump 2's command before its own next one.
  assertCommand(await pumpOne.nextFrame(), 'devices/pump-1/commands', { action: 'status' });
});

test('command to an idle device reaches nobody', stepTimeout, async () => {
  const result = await publishThroughApi('devices/pump-3/commands', { action: 'start' });

  assert.equal(result.status, 202);
  assert.deepEqual(result.body, { channel: 'devices/pump-3/commands', delivered: 0 });
});

test('backend cannot publish telemetry', stepTimeout, async () => {
  const refused = await publishThroughApi('devices/pump-1/telemetry', { forged: true });

  assert.equal(refused.status, 403);
  assert.equal(refused.body.error, 'forbidden');
  // The refused message was not delivered, so pump 1's next frame is the next real command.
  await publishThroughApi('devices/pump-1/commands', { action: 'after-refusal' });
  assertCommand(await pumpOne.nextFrame(), 'devices/pump-1/commands', { action: 'after-refusal' });
});

test('device cannot command another device', stepTimeout, async () => {
  pumpTwo.send({ type: 'publish', id: 'spoof', channel: 'devices/pump-1/commands', data: { action: 'stop' } });
  const refusal = await pumpTwo.nextFrame();

  assert.equal(refusal.type, 'error');
  assert.equal(refusal.id, 'spoof');
  assert.equal(refusal.code, 'forbidden');
  await publishThroughApi('devices/pump-1/commands', { action: 'after-spoof' });
  assertCommand(await pumpOne.nextFrame(), 'devices/pump-1/commands', { action: 'after-spoof' });
});

test('backend socket command reaches its device', stepTimeout, async () => {
  const backendSocket = await openDeviceSocket(server, { clientId: backendId, accessToken: backendToken });
  try {
    backendSocket.send({ type: 'publish', id: 'ws-1', channel: 'devices/pump-2/commands', data: { action: 'flush' } });
    assert.deepEqual(await backendSocket.nextFrame(), { type: 'published', id: 'ws-1', channel: 'devices/pump-2/commands' });
    assertCommand(await pumpTwo.nextFrame(), 'devices/pump-2/commands', { action: 'flush' });

    // The backend has no subscribe scope, so it cannot listen to the devices it commands.
    backendSocket.send({ type: 'subscribe', id: 'ws-2', channel: 'devices/pump-1/commands' });
    const refusal = await backendSocket.nextFrame();
    assert.equal(refusal.type, 'error');
    assert.equal(refusal.code, 'forbidden');
  } finally {
    await backendSocket.close();
  }

  assert.deepEqual(pumpOne.unreadFrames, []);
  assert.deepEqual(pumpTwo.unreadFrames, []);
});
