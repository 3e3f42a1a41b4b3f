// Broadcast frames are framed once and written to each socket as they are. The header must follow
// RFC 6455 section 5.2 at each payload-length boundary, as a WebSocket client we did not write (ws)
// reads it from a real server over TLS.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { RawData } from 'ws';

import { BroadcastFrame } from '../../src/channels/broadcast-frame.ts';
import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { commandsChannel, openDeviceSocket, type GatewaySocket } from '../support/websocket.ts';

describe('broadcast frame header', () => {
  const cases = [
    { length: 0, header: [0x81, 0] },
    { length: 125, header: [0x81, 125] },
    { length: 126, header: [0x81, 126, 0, 126] },
    { length: 65_535, header: [0x81, 126, 0xff, 0xff] },
    { length: 65_536, header: [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0] },
  ];

  for (const { length, header } of cases) {
    test(`payload of ${length} bytes`, () => {
      const payload = Buffer.alloc(length, 0x61);
      const wire = new BroadcastFrame(payload).wire;
      assert.deepEqual([...wire.subarray(0, header.length)], header);
      assert.equal(wire.length, header.length + length);
      assert.ok(wire.subarray(header.length).equals(payload));
    });
  }
});

describe('broadcast frames over TLS', () => {
  let server: TestServer;
  let socket: GatewaySocket;
  const received: string[] = [];

  before(async () => {
    server = await startTestServer({ maxPayloadBytes: 256 * 1024 });
    const device = { clientId: 'framed-device', accessToken: await deviceToken(server, await addDevice(server, 'framed-device')) };
    socket = await openDeviceSocket(server, device);
    socket.socket.on('message', (data: RawData, isBinary: boolean) => {
      assert.equal(isBinary, false, 'message frames are text');
      received.push(data.toString('utf8'));
    });
    const reply = await socket.request({ type: 'subscribe', channel: commandsChannel('framed-device') });
    assert.equal(reply.type, 'subscribed');
  });

  after(async () => {
    socket?.close();
    await server?.close();
  });

  async function publishAndReceive(data: string): Promise<string> {
    const before = received.length;
    assert.equal(server.running.publish(commandsChannel('framed-device'), data), 1);
    for (let waited = 0; received.length === before && waited < 5_000; waited += 10) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(received.length, before + 1, 'one message arrived');
    return received[before];
  }

  test('lengths around each boundary', async () => {
    // The frame's JSON around the data has a fixed length while the timestamp has 13 digits. It is
    // over 125 bytes, so every message frame has at least the 16-bit length.
    const overhead = Buffer.byteLength(await publishAndReceive(''));
    assert.ok(overhead > 125);
    for (const target of [overhead + 1, 65_535, 65_536, 65_537]) {
      const data = 'x'.repeat(target - overhead);
      const text = await publishAndReceive(data);
      assert.equal(Buffer.byteLength(text), target);
      assert.equal(JSON.parse(text).data, data);
    }
  });
});
