// A subscriber that stops reading is closed once its unsent data passes maxBufferedBytes, while the
// other subscribers of the same channel keep receiving every message in order.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { fetchLiveConnections } from '../../src/gateway/admin-socket.ts';
import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { openDeviceSocket, socketWaitMs, type GatewaySocket } from '../support/websocket.ts';

const channel = 'devices/fleet/commands';
const readerCount = 8;
// About 2 KiB per message once serialised.
const padding = 'x'.repeat(2048);
// At least this many messages are published, and more if the slow subscriber is still open by then.
const minimumMessages = 3000;
// Loopback kernel buffers can absorb several MiB before the server's own queue grows, so the test
// keeps publishing until the server gives up on the slow subscriber, up to this bound.
const maximumMessages = 30_000;
const batchSize = 100;

let server: TestServer;
let backend: { client_id: string; client_secret: string };

before(async () => {
  server = await startTestServer();
  backend = await addDevice(server, 'fleet-backend', ['--scope', 'subscribe:devices/#']);
});

after(async () => {
  await server?.close();
});

/** A subscriber that records the sequence number of every message it receives. */
interface Reader {
  socket: GatewaySocket;
  sequence: number[];
}

async function subscribe(): Promise<GatewaySocket> {
  const socket = await openDeviceSocket(server, { clientId: backend.client_id, accessToken: await deviceToken(server, backend) });
  socket.send({ type: 'subscribe', id: 1, channel });
  assert.deepEqual(await socket.nextFrame(), { type: 'subscribed', id: 1, channel });
  return socket;
}

function record(socket: GatewaySocket): Reader {
  const reader: Reader = { socket, sequence: [] };
  socket.socket.on('message', (data) => {
    const frame = JSON.parse(data.toString()) as { type: string; data?: { seq?: number } };
    if (frame.type === 'message') {
      reader.sequence.push(frame.data?.seq ?? -1);
    }
  });
  return reader;
}

/** Waits until every reader has received `count` messages, and rejects after `socketWaitMs` without progress. */
async function caughtUp(readers: Reader[], count: number): Promise<void> {
  let received = -1;
  let idleMs = 0;
  while (readers.some((reader) => reader.sequence.length < count)) {
    const total = readers.reduce((sum, reader) => sum + reader.sequence.length, 0);
    idleMs = total === received ? idleMs + 10 : 0;
    received = total;
    if (idleMs > socketWaitMs) {
      throw new Error(`readers stalled below ${count} messages: ${readers.map((reader) => reader.sequence.length).join(', ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function slowConsumerLogged(connectionId: string): boolean {
  return server.logs.some((line) => {
    const entry = JSON.parse(line) as { event?: string; connection_id?: string };
    return entry.event === 'connection.slow_consumer' && entry.connection_id === connectionId;
  });
}

async function liveConnectionIds(): Promise<string[]> {
  const connections = await fetchLiveConnections(server.dataDir) as Array<{ id: string }> | null;
  assert.ok(connections, 'the admin socket did not answer');
  return connections.map((connection) => connection.id);
}

test('slow subscriber closed, others get everything', { timeout: 180_000 }, async () => {
  const readers: Reader[] = [];
  for (let index = 0; index < readerCount; index += 1) {
    readers.push(record(await subscribe()));
  }
  const slow = await subscribe();
  const slowId = slow.welcome.connection_id;
  // Stops reading the TCP stream, so everything the server sends piles up on its side.
  const slowTcp = (slow.socket as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  slowTcp.pause();
  try {
    assert.ok((await liveConnectionIds()).includes(slowId), 'the slow subscriber is not live before the test');

    let published = 0;
    while (published < minimumMessages || (!slowConsumerLogged(slowId) && published < maximumMessages)) {
      for (let index = 0; index < batchSize; index += 1) {
        server.running.publish(channel, { seq: published, padding });
        published += 1;
      }
      // Readers must keep up for the test to show that only the slow one is dropped.
      await caughtUp(readers, published);
    }

    assert.ok(slowConsumerLogged(slowId), `no connection.slow_consumer line for the paused subscriber after ${published} messages`);
    const expected = Array.from({ length: published }, (_value, index) => index);
    for (const [index, reader] of readers.entries()) {
      assert.equal(reader.sequence.length, published, `reader ${index} message count`);
      assert.deepEqual(reader.sequence, expected, `reader ${index} received messages out of order`);
      assert.equal(reader.socket.isOpen, true, `reader ${index} was closed`);
      assert.equal(slowConsumerLogged(reader.socket.welcome.connection_id), false, `reader ${index} was logged as a slow consumer`);
    }

    const live = await liveConnectionIds();
    assert.equal(live.includes(slowId), false, 'the slow subscriber is still listed as live');
    for (const reader of readers) {
      assert.ok(live.includes(reader.socket.welcome.connection_id), 'a reader is missing from the live connections');
    }
  } finally {
    // The server discards the queued data, close frame included, so the client may see 1013 or 1006.
    slowTcp.resume();
    await slow.waitForClose().catch(() => slow.socket.terminate());
    await Promise.all(readers.map((reader) => reader.socket.close()));
  }
});

test('server serves new subscribers afterwards', async () => {
  const socket = await subscribe();
  try {
    assert.equal(server.running.publish(channel, { seq: 0, padding }), 1);
    const message = await socket.nextFrame();
    assert.equal(message.type, 'message');
    assert.deepEqual(message.data, { seq: 0, padding });
  } finally {
    await socket.close();
  }
});
