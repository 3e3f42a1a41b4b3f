// Limits on open sockets against a real server over TLS: the message size limit with and without
// permessage-deflate, and the heartbeat that drops peers which stop responding to pings.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';

import WebSocket from 'ws';

import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { deviceHeaders, GatewaySocket, socketWaitMs, type DeviceCredentials, type WelcomeFrame } from '../support/websocket.ts';

const maxPayloadBytes = 64 * 1024;

/** A connected device socket, with the number of pings it has received so far. */
interface PingCountingSocket {
  gateway: GatewaySocket;
  pings(): number;
  /** Resolves once the socket has received `count` pings in total; rejects after `socketWaitMs`. */
  waitForPings(count: number): Promise<void>;
}

async function registerDevice(server: TestServer, clientId: string): Promise<DeviceCredentials> {
  return { clientId, accessToken: await deviceToken(server, await addDevice(server, clientId)) };
}

/** Opens a device socket with `ws` client options of the test's choice and waits for the welcome frame. */
async function connect(server: TestServer, device: DeviceCredentials, options: WebSocket.ClientOptions = {}): Promise<PingCountingSocket> {
  const socket = new WebSocket(`wss://localhost:${server.port}/ws`, {
    ca: server.caPem,
    headers: deviceHeaders(device),
    handshakeTimeout: socketWaitMs,
    ...options,
  });
  let pings = 0;
  const pingListeners = new Set<() => void>();
  socket.on('ping', () => {
    pings += 1;
    for (const listener of pingListeners) {
      listener();
    }
  });

  const welcome = await new Promise<WelcomeFrame>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no welcome frame within ${socketWaitMs} ms`));
    }, socketWaitMs);
    socket.once('message', (data) => {
      clearTimeout(timer);
      resolve(JSON.parse(data.toString()) as WelcomeFrame);
    });
    socket.once('unexpected-response', (_request, response) => {
      clearTimeout(timer);
      response.resume();
      socket.terminate();
      reject(new Error(`handshake rejected with ${response.statusCode}`));
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });

  return {
    gateway: new GatewaySocket(socket, welcome),
    pings: () => pings,
    waitForPings: (count) => new Promise((resolve, reject) => {
      const check = () => {
        if (pings >= count) {
          finish();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${pings} pings arrived within ${socketWaitMs} ms, expected ${count}`));
      }, socketWaitMs);
      const finish = () => {
        clearTimeout(timer);
        pingListeners.delete(check);
      };
      pingListeners.add(check);
      check();
    }),
  };
}

/** Resolves with the next pong, or with the close if the socket closes first. */
function pongOrClose(gateway: GatewaySocket): Promise<'pong' | 'close'> {
  return new Promise((resolve) => {
    gateway.socket.once('pong', () => resolve('pong'));
    gateway.socket.once('close', () => resolve('close'));
    gateway.socket.ping();
  });
}

for (const perMessageDeflate of [false, true]) {
  describe(`message size, permessage-deflate ${perMessageDeflate ? 'on' : 'off'}`, () => {
    let server: TestServer;
    let device: DeviceCredentials;

    before(async () => {
      server = await startTestServer({ perMessageDeflate, maxPayloadBytes });
      device = await registerDevice(server, 'payload-device');
    });

    after(async () => {
      await server.close();
    });

    test(`extension ${perMessageDeflate ? 'negotiated' : 'declined'}`, async () => {
      // The ws client offers permessage-deflate by default, so the negotiated extensions show the server's choice.
      const { gateway } = await connect(server, device);

      assert.equal(gateway.socket.extensions.includes('permessage-deflate'), perMessageDeflate, `extensions: ${gateway.socket.extensions}`);
      await gateway.close();
    });

    test('message at the limit is accepted', async () => {
      const { gateway } = await connect(server, device);

      gateway.socket.send('x'.repeat(maxPayloadBytes), { compress: false });
      // The server reads frames in order, so the pong to a later ping proves the message was read.
      await pongOrClose(gateway);

      assert.notEqual(gateway.closeInfo?.code, 1009, 'a message of exactly maxPayloadBytes is within the limit');
      await gateway.close();
    });

    test('frame over the limit closes with 1009', async () => {
      const { gateway } = await connect(server, device);

      gateway.socket.send('x'.repeat(maxPayloadBytes + 1), { compress: false });
      const closed = await gateway.waitForClose();

      assert.equal(closed.code, 1009);
    });

    if (perMessageDeflate) {
      test('small compressed frame inflating past the limit closes with 1009', async () => {
        const { gateway } = await connect(server, device, { perMessageDeflate: { threshold: 0 } });
        const payload = Buffer.alloc(200 * 1024);
        assert.ok(zlib.deflateRawSync(payload).length < maxPayloadBytes, 'the compressed frame itself is under the limit');

        gateway.socket.send(payload, { binary: false, compress: true });
        const closed = await gateway.waitForClose();

        assert.equal(closed.code, 1009);
      });
    }
  });
}

describe('heartbeat', () => {
  let server: TestServer;
  let device: DeviceCredentials;

  before(async () => {
    server = await startTestServer({ heartbeatIntervalMs: 200 });
    device = await registerDevice(server, 'heartbeat-device');
  });

  after(async () => {
    await server.close();
  });

  test('silent peer is terminated, responsive peer stays', async () => {
    const responsive = await connect(server, device);
    const silent = await connect(server, device, { autoPong: false });
    try {
      const closed = await silent.gateway.waitForClose();

      // Terminated without a closing handshake, after two unanswered pings.
      assert.equal(closed.code, 1006);
      assert.equal(silent.pings(), 2);
      const timeoutLines = server.logs.filter((line) => line.includes('"connection.heartbeat_timeout"'));
      assert.equal(timeoutLines.length, 1);
      assert.equal(JSON.parse(timeoutLines[0]).connection_id, silent.gateway.welcome.connection_id);
      assert.ok(!timeoutLines[0].includes(device.accessToken.split('.')[2]), 'the log line holds no token');

      // Three more rounds than the silent peer survived.
      await responsive.waitForPings(responsive.pings() + 3);
      assert.equal(responsive.gateway.isOpen, true, `closed with ${responsive.gateway.closeInfo?.code}`);
      assert.equal(server.logs.filter((line) => line.includes('"connection.heartbeat_timeout"')).length, 1);
    } finally {
      await responsive.gateway.close();
      silent.gateway.socket.terminate();
    }
  });
});
