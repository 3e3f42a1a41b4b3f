// A burst of messages published in one step reaches a subscriber that reads everything, even when
// it passes maxBufferedBytes: frames queued in one event-loop iteration have not been offered to the
// peer yet, so the slow-consumer check leaves them out. Runs over TLS and over the plain listener.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { commandsChannel, deviceHeaders, openSocket, socketWaitMs, type GatewaySocket } from '../support/websocket.ts';

// 20 messages of about 60 KB, 1.2 MB in all, over the default limit of 1 MiB.
const messageCount = 20;
const padding = 'x'.repeat(60_000);

let server: TestServer;

before(async () => {
  server = await startTestServer({ trustedProxies: ['127.0.0.1'], plainPort: 0 });
});

after(async () => {
  await server?.close();
});

async function subscriber(clientId: string, url: string | undefined): Promise<{ socket: GatewaySocket; received: number[] }> {
  const device = { clientId, accessToken: await deviceToken(server, await addDevice(server, clientId)) };
  const headers = url ? { ...deviceHeaders(device), 'X-Forwarded-Proto': 'https' } : deviceHeaders(device);
  const socket = await openSocket({ server, url, headers });
  const received: number[] = [];
  socket.socket.on('message', (data) => {
    const frame = JSON.parse(data.toString()) as { type: string; data?: { seq: number } };
    if (frame.type === 'message') {
      received.push(frame.data!.seq);
    }
  });
  const reply = await socket.request({ type: 'subscribe', channel: commandsChannel(clientId) });
  assert.equal(reply.type, 'subscribed');
  return { socket, received };
}

describe('publish burst', () => {
  for (const listener of ['TLS', 'plain'] as const) {
    test(`burst reaches a reader over ${listener}`, async () => {
      const clientId = `burst-${listener.toLowerCase()}`;
      const url = listener === 'plain' ? `ws://127.0.0.1:${server.running.plainPort}/ws` : undefined;
      const { socket, received } = await subscriber(clientId, url);
      try {
        for (let seq = 0; seq < messageCount; seq += 1) {
          assert.equal(server.running.publish(commandsChannel(clientId), { seq, padding }), 1);
        }

        for (let waited = 0; received.length < messageCount && waited < socketWaitMs; waited += 20) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.deepEqual(received, Array.from({ length: messageCount }, (_, seq) => seq));
        assert.equal(server.logs.some((line) => line.includes('"connection.slow_consumer"')), false);
      } finally {
        socket.close();
      }
    });
  }
});
