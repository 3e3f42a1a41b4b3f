// Slowloris: 1,000 connections stop half way through the TLS handshake or the HTTP request, some of
// them sending one more byte or header line every second, while a legitimate device connects. No
// limit caps such connections, because the handshake limits count only complete upgrade requests.
// What ends them is `handshakeTimeoutMs`, which the server applies to the TLS handshake and, as
// Node's `headersTimeout`, to the request headers, both counted from the start, so trickling bytes
// does not extend them.
import assert from 'node:assert/strict';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import tls from 'node:tls';

import { defaultOptions } from '../../src/config/options.ts';
import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { deviceRoundTrip, openDeviceSocket, type DeviceCredentials, type GatewaySocket } from '../support/websocket.ts';

/**
 * Twice the default, because all 1,000 connections must be open before the first one times out. This
 * test took up to 9 s to open them on a 2-core machine with a load average of 13.
 */
const handshakeTimeoutMs = 20_000;
const stalledConnections = 1000;
/** Connections opened at the same time, so the attack does not starve the server of CPU while it builds up. */
const openBatchSize = 50;
const trickleIntervalMs = 1000;
/** Bound on the wait for the server to close every stalled connection. Only a hang reaches it. */
const closeWaitMs = handshakeTimeoutMs + 60_000;

type StallKind = 'half TLS handshake' | 'half HTTP request';

/** One attacking connection that stops half way and waits for the server to close it. */
interface StalledConnection {
  kind: StallKind;
  /** Whether it keeps sending one more byte or header line every second. */
  trickles: boolean;
  socket: net.Socket;
  /** `performance.now()` when the connection was opened. */
  openedAt: number;
  /** `performance.now()` when the server closed it, or null while it is open. */
  closedAt: number | null;
  /** Text the server sent before it closed the connection. */
  received: string;
  /** Returns the next bytes a trickling connection sends, or null when it has nothing left to send. */
  nextTrickle(): Buffer | string | null;
}

/** Every attacking socket opened, including those whose setup failed, so that each is destroyed at the end. */
const attackingSockets: net.Socket[] = [];

/** Returns the first TLS record a Node client sends for `localhost`: its ClientHello. No network is used. */
function captureClientHello(): Promise<Buffer> {
  return new Promise((resolve) => {
    const transport = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        resolve(Buffer.from(chunk));
        callback();
        setImmediate(() => client.destroy());
      },
    });
    const client = tls.connect({ socket: transport, servername: 'localhost' });
    client.on('error', () => {});
  });
}

/**
 * Writes `firstBytes` once `socket` connects and resolves with the stalled connection, which then
 * records what the server sends and when it closes. Rejects if the socket fails before that.
 */
function stall(socket: net.Socket, init: { kind: StallKind; trickles: boolean; connectEvent: string; firstBytes: Buffer | string; nextTrickle: () => Buffer | string | null }): Promise<StalledConnection> {
  const connection: StalledConnection = {
    kind: init.kind,
    trickles: init.trickles,
    socket,
    openedAt: performance.now(),
    closedAt: null,
    received: '',
    nextTrickle: init.nextTrickle,
  };
  attackingSockets.push(socket);
  socket.on('data', (chunk: Buffer) => {
    connection.received += chunk.toString('latin1');
  });
  socket.once('close', () => {
    connection.closedAt = performance.now();
  });

  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.once(init.connectEvent, () => {
      socket.write(init.firstBytes, (error) => {
        socket.off('error', reject);
        // A reset when the server gives up on the connection is the expected end.
        socket.on('error', () => {});
        if (error) {
          reject(error);
          return;
        }
        resolve(connection);
      });
    });
  });
}

/** Sends the first half of a ClientHello over plain TCP. A trickling connection then sends the rest a byte at a time. */
function stallTlsHandshake(server: TestServer, clientHello: Buffer, trickles: boolean): Promise<StalledConnection> {
  let sent = clientHello.length >> 1;
  // The last byte is never sent, so the handshake never completes.
  const nextTrickle = () => (sent < clientHello.length - 1 ? clientHello.subarray(sent, ++sent) : null);
  const socket = net.connect({ host: '127.0.0.1', port: server.port });
  return stall(socket, { kind: 'half TLS handshake', trickles, connectEvent: 'connect', firstBytes: clientHello.subarray(0, sent), nextTrickle });
}

/** Completes TLS and sends part of an upgrade request. A trickling connection then sends one more header line at a time. */
function stallHttpRequest(server: TestServer, trickles: boolean): Promise<StalledConnection> {
  let line = 0;
  const nextTrickle = () => `X-Slow-${++line}: 1\r\n`;
  const socket = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: server.caPem });
  const firstBytes = `GET /ws HTTP/1.1\r\nHost: localhost:${server.port}\r\nUpgrade: websocket\r\n`;
  return stall(socket, { kind: 'half HTTP request', trickles, connectEvent: 'secureConnect', firstBytes, nextTrickle });
}

/** Sends the next trickle of every open trickling connection. */
function trickleAll(connections: readonly StalledConnection[]): void {
  for (const connection of connections) {
    if (!connection.trickles || connection.closedAt !== null || connection.socket.destroyed) {
      continue;
    }
    const bytes = connection.nextTrickle();
    if (bytes !== null) {
      connection.socket.write(bytes);
    }
  }
}

/** Resolves true once `done` returns true, checking every 100 ms, or false after `timeoutMs`. */
async function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > deadline) {
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

/** Returns minimum, median and maximum of `values`, rounded to milliseconds, for a diagnostic line. */
function spread(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (fraction: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]);
  return `min ${at(0)} ms, median ${at(0.5)} ms, max ${at(1)} ms`;
}

let server: TestServer;
let device: DeviceCredentials;

before(async () => {
  server = await startTestServer({
    handshakeTimeoutMs,
    // The production defaults, so the test shows the stalled connections use up none of these budgets.
    handshakesPerIpPerMinute: defaultOptions.handshakesPerIpPerMinute,
    maxPendingHandshakes: defaultOptions.maxPendingHandshakes,
    maxConnectionsPerClient: defaultOptions.maxConnectionsPerClient,
  });
  const clientId = 'slowloris-victim';
  device = { clientId, accessToken: await deviceToken(server, await addDevice(server, clientId)) };
});

after(async () => {
  await server.close();
});

test('attack 12: 1,000 stalled connections', { timeout: 240_000 }, async (t) => {
  const clientHello = await captureClientHello();
  const stalled: StalledConnection[] = [];
  const trickleTimer = setInterval(() => trickleAll(stalled), trickleIntervalMs);
  let legitimate: GatewaySocket | null = null;

  try {
    const attackStarted = performance.now();
    for (let start = 0; start < stalledConnections; start += openBatchSize) {
      const batch: Array<Promise<StalledConnection>> = [];
      for (let index = start; index < start + openBatchSize; index += 1) {
        // Alternates the kinds, and within each kind half the connections trickle.
        const trickles = index % 4 >= 2;
        batch.push(index % 2 === 0 ? stallTlsHandshake(server, clientHello, trickles) : stallHttpRequest(server, trickles));
      }
      stalled.push(...await Promise.all(batch));
    }
    const attackBuiltMs = performance.now() - attackStarted;

    const connectStarted = performance.now();
    legitimate = await openDeviceSocket(server, device);
    const connectMs = performance.now() - connectStarted;
    const openWhileConnecting = stalled.filter((connection) => connection.closedAt === null).length;
    t.diagnostic(`opening 1,000 stalled connections took ${Math.round(attackBuiltMs)} ms; the legitimate device then connected in ${Math.round(connectMs)} ms`);

    assert.equal(legitimate.welcome.type, 'welcome', 'a legitimate device did not connect while 1,000 connections stalled');
    assert.equal(openWhileConnecting, stalledConnections, `only ${openWhileConnecting} stalled connections were still open when the legitimate device connected, so it did not connect under the full attack`);

    const allClosed = await waitUntil(() => stalled.every((connection) => connection.closedAt !== null), closeWaitMs);
    clearInterval(trickleTimer);
    const groups = [['half TLS handshake', false], ['half TLS handshake', true], ['half HTTP request', false], ['half HTTP request', true]] as const;
    for (const [kind, trickles] of groups) {
      const group = stalled.filter((connection) => connection.kind === kind && connection.trickles === trickles);
      const open = group.filter((connection) => connection.closedAt === null).length;

      assert.equal(open, 0, `${open} of ${group.length} ${trickles ? 'trickling' : 'silent'} connections with a ${kind} were not closed by the server within ${closeWaitMs} ms`);
    }
    assert.ok(allClosed, 'some stalled connections were never closed by the server');
    const upgraded = stalled.filter((connection) => connection.received.startsWith('HTTP/1.1 101'));
    assert.equal(upgraded.length, 0, 'a half HTTP request was upgraded');
    const halfRequests = stalled.filter((connection) => connection.kind === 'half HTTP request');
    const notTimedOut = halfRequests.filter((connection) => !connection.received.startsWith('HTTP/1.1 408 ') || !connection.received.includes('\r\nX-Portcullis-Error: request_timeout\r\n'));
    assert.equal(notTimedOut.length, 0, `${notTimedOut.length} of ${halfRequests.length} half HTTP requests were not answered with 408 request_timeout`);

    // The timeouts that ended the stalled connections do not apply to an upgraded one.
    const echoed = await deviceRoundTrip(legitimate, { after: 'slowloris' });
    assert.deepEqual(echoed.data, { after: 'slowloris' }, 'the legitimate connection stopped carrying messages after the stalled ones were closed');

    for (const kind of ['half TLS handshake', 'half HTTP request'] as const) {
      const lifetimes = stalled.filter((connection) => connection.kind === kind).map((connection) => connection.closedAt! - connection.openedAt);
      t.diagnostic(`${kind}: lived ${spread(lifetimes)}`);
    }
    const answers = new Set(stalled.filter((connection) => connection.kind === 'half HTTP request').map((connection) => connection.received.split('\r\n')[0] || '(nothing)'));
    t.diagnostic(`half HTTP requests were answered with: ${[...answers].join('; ')}`);
  } finally {
    clearInterval(trickleTimer);
    for (const socket of attackingSockets) {
      socket.destroy();
    }
    await legitimate?.close();
  }
});
