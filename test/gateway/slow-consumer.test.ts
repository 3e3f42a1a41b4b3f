import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import WebSocket from 'ws';

import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;
before(async () => {
  server = await startTestServer({ maxBufferedBytes: 256 * 1024 });
});
after(async () => {
  await server.close();
});

test('non-reading client is closed as slow consumer', { timeout: 60_000 }, async () => {
  const device = await addDevice(server, 'silent-reader');
  const token = await deviceToken(server, device);
  const socket = new WebSocket(`wss://localhost:${server.port}/ws`, ['portcullis.v1'], {
    ca: server.caPem,
    headers: { authorization: `Bearer ${token}`, 'x-client-id': device.client_id },
  });
  await new Promise((resolve, reject) => {
    socket.once('message', resolve);
    socket.once('error', reject);
  });

  // Stop reading, so every echo stays queued on the server.
  const rawSocket = (socket as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  rawSocket.pause();
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const frame = 'x'.repeat(60_000);
  let sent = 0;
  let open = true;
  void closed.then(() => { open = false; });
  while (open && sent < 2000) {
    socket.send(frame);
    sent += 1;
    await new Promise((resolve) => setImmediate(resolve));
    if (server.logs.some((line) => line.includes('"connection.slow_consumer"'))) {
      break;
    }
  }

  const slowConsumerLine = server.logs.find((line) => line.includes('"connection.slow_consumer"'));
  assert.ok(slowConsumerLine, `no slow_consumer log after ${sent} frames`);
  // Reading again lets the client see the server end the connection.
  rawSocket.resume();
  await closed;
  const closedLine = server.logs.find((line) => line.includes('"connection.closed"') && line.includes(JSON.parse(slowConsumerLine).connection_id));
  assert.ok(closedLine);

  // The server keeps serving others.
  const other = await deviceToken(server, device);
  assert.equal(typeof other, 'string');
});
