// Shutdown of a server with open connections: every socket gets a reconnect hint within the drain
// window, then a 1001 close, and the server refuses new connections while it stops.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { addDevice, deviceToken, startTestServer } from '../support/server.ts';
import { openDeviceSocket, type GatewaySocket } from '../support/websocket.ts';

const drainWindowMs = 5000;
const socketCount = 12;

test('shutdown spreads reconnect hints', async () => {
  const server = await startTestServer({ drainWindowMs });
  const sockets: GatewaySocket[] = [];
  try {
    const device = await addDevice(server, 'draining-device', []);
    for (let index = 0; index < socketCount; index += 1) {
      sockets.push(await openDeviceSocket(server, { clientId: device.client_id, accessToken: await deviceToken(server, device) }));
    }
  } finally {
    await server.close();
  }

  const hints: number[] = [];
  for (const socket of sockets) {
    assert.deepEqual(await socket.waitForClose(), { code: 1001, reason: 'server shutting down' });
    const reconnect = socket.unreadFrames.find((frame) => frame.type === 'reconnect');
    assert.ok(reconnect, 'no reconnect frame before the close');
    assert.equal(typeof reconnect.after_ms, 'number');
    hints.push(reconnect.after_ms as number);
  }

  assert.ok(hints.every((hint) => Number.isInteger(hint) && hint >= 0 && hint < drainWindowMs), hints.join(' '));
  // Twelve draws from 5000 values: all equal would mean the hints are not spread at all.
  assert.ok(new Set(hints).size > 1, `every hint was ${hints[0]}`);
  assert.ok(server.logs.some((line) => line.includes('"server.draining"') && line.includes(`"connections":${socketCount}`)));
});
