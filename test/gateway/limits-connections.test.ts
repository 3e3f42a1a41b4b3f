// Limits on handshakes in progress and on open connections per device client id and per user,
// against a real server over TLS.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import type { ErrorCode } from '../../src/errors.ts';
import { scriptedLogin } from '../support/browser-login.ts';
import { rawHandshake, type RawResponse } from '../support/raw-handshake.ts';
import { addDevice, addUser, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { browserHeaders, deviceHeaders, openBrowserSocket, openDeviceSocket, socketWaitMs, type DeviceCredentials, type GatewaySocket } from '../support/websocket.ts';

const password = 'a long enough password';
const maxProbes = 200;

function handshake(server: TestServer, headers: Record<string, string | string[] | null> = {}): Promise<RawResponse> {
  return rawHandshake({ port: server.port, ca: server.caPem, headers });
}

async function registerDevice(server: TestServer, clientId: string): Promise<DeviceCredentials & { secret: { client_id: string; client_secret: string } }> {
  const secret = await addDevice(server, clientId);
  return { clientId, accessToken: await deviceToken(server, secret), secret };
}

function assertRejected(response: RawResponse, status: number, code: ErrorCode): void {
  assert.equal(response.status, status);
  assert.equal(response.json?.error, code);
  assert.equal(response.headers['x-portcullis-error'], code);
  assert.equal(response.headers['sec-websocket-accept'], undefined);
}

/**
 * Takes the server's database connection until the returned function is called. Kysely's SQLite
 * driver runs every query on one connection, so each handshake that reaches the revocation check
 * waits there, still counted as pending.
 */
async function holdDatabase(server: TestServer): Promise<() => Promise<void>> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => { release = resolve; });
  let acquired!: () => void;
  const connectionTaken = new Promise<void>((resolve) => { acquired = resolve; });

  const finished = server.running.store.connection().execute(async () => {
    acquired();
    await released;
  });
  await connectionTaken;
  return async () => {
    release();
    await finished;
  };
}

/**
 * Sends handshakes without credentials until one is not rejected with 401, and returns it. Such a
 * handshake fails before any database work, so it is pending only while its own checks run and
 * cannot take the place of a handshake waiting at the database.
 */
async function probeUntilBusy(server: TestServer): Promise<RawResponse> {
  for (let probe = 0; probe < maxProbes; probe += 1) {
    const response = await handshake(server);
    if (response.status !== 401) {
      return response;
    }
  }
  throw new Error(`${maxProbes} probes were all rejected with 401; the pending handshakes never reached the cap`);
}

/** Waits until the server has logged the close of a connection, which frees its slot. */
async function waitForServerClose(server: TestServer, connectionId: string): Promise<void> {
  const pollMs = 20;
  for (let waited = 0; waited < socketWaitMs; waited += pollMs) {
    if (server.logs.some((line) => line.includes('"connection.closed"') && line.includes(connectionId))) {
      return;
    }
    await delay(pollMs);
  }
  throw new Error(`the server logged no close of ${connectionId} within ${socketWaitMs} ms`);
}

async function closeAll(sockets: GatewaySocket[]): Promise<void> {
  await Promise.all(sockets.map((socket) => socket.close()));
}

describe('pending handshakes', () => {
  let server: TestServer;
  let device: DeviceCredentials;

  before(async () => {
    server = await startTestServer({ maxPendingHandshakes: 2 });
    device = await registerDevice(server, 'pending-device');
  });

  after(async () => {
    await server.close();
  });

  test('third handshake gets 503 while two wait', async () => {
    const release = await holdDatabase(server);
    let waiting: Array<Promise<RawResponse>> = [];
    let busy: RawResponse;
    try {
      waiting = [handshake(server, deviceHeaders(device)), handshake(server, deviceHeaders(device))];
      busy = await probeUntilBusy(server);
    } finally {
      await release();
    }

    assertRejected(busy, 503, 'server_busy');
    assert.equal(busy.headers['retry-after'], '1');
    const statuses = (await Promise.all(waiting)).map((response) => response.status);
    assert.deepEqual(statuses, [101, 101], 'the waiting handshakes complete once the database is free');
    assert.equal((await handshake(server, deviceHeaders(device))).status, 101, 'finished handshakes leave the count');
  });

  test('rejected handshakes leave the count', async () => {
    const rejections: Array<[Record<string, string | null>, number]> = [
      [{}, 401],
      [{ ...deviceHeaders(device), Authorization: 'Bearer not-a-token' }, 401],
      [{ ...deviceHeaders(device), 'X-Client-Id': 'someone-else' }, 403],
      [{ ...deviceHeaders(device), 'Sec-WebSocket-Version': '8' }, 400],
    ];
    for (const [headers, status] of rejections) {
      assert.equal((await handshake(server, headers)).status, status);
    }

    assert.equal((await handshake(server, deviceHeaders(device))).status, 101);
  });
});

describe('connections per device client id', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ maxConnectionsPerClient: 5, maxPendingHandshakes: 2 });
  });

  after(async () => {
    await server.close();
  });

  test('sixth connection gets 429 until one closes', async () => {
    const device = await registerDevice(server, 'capped-device');
    const sockets: GatewaySocket[] = [];
    try {
      for (let index = 0; index < 5; index += 1) {
        sockets.push(await openDeviceSocket(server, device));
      }

      assertRejected(await handshake(server, deviceHeaders(device)), 429, 'too_many_connections');
      assert.ok(sockets.every((socket) => socket.isOpen), 'the open connections are kept');
      const other = await registerDevice(server, 'uncapped-neighbour');
      assert.equal((await handshake(server, deviceHeaders(other))).status, 101, 'another client id has its own slots');

      const closing = sockets.shift()!;
      await closing.close();
      await waitForServerClose(server, closing.welcome.connection_id);
      sockets.push(await openDeviceSocket(server, device));
      assert.equal(sockets.length, 5);
    } finally {
      await closeAll(sockets);
    }
  });

  test('last slot goes to one of two handshakes', async () => {
    const device = await registerDevice(server, 'raced-device');
    const sockets: GatewaySocket[] = [];
    try {
      for (let index = 0; index < 4; index += 1) {
        sockets.push(await openDeviceSocket(server, device));
      }

      // Both handshakes are pending while the database is held, as the 503 of a probe proves. The
      // winner keeps its socket open, so its slot stays taken whichever handshake finishes first.
      // Tokens never presented before make both read the database: a token admitted once skips it.
      const racers = [
        { clientId: device.clientId, accessToken: await deviceToken(server, device.secret) },
        { clientId: device.clientId, accessToken: await deviceToken(server, device.secret) },
      ];
      const release = await holdDatabase(server);
      let racing: Array<Promise<GatewaySocket>> = [];
      try {
        racing = racers.map((racer) => openDeviceSocket(server, racer));
        assertRejected(await probeUntilBusy(server), 503, 'server_busy');
      } finally {
        await release();
      }

      const outcomes = await Promise.allSettled(racing);
      const winners = outcomes.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
      const losers = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [String(outcome.reason)] : []));
      sockets.push(...winners);
      assert.equal(winners.length, 1, 'exactly one handshake takes the last slot');
      assert.equal(losers.length, 1);
      assert.match(losers[0], /rejected with 429 too_many_connections/);
    } finally {
      await closeAll(sockets);
    }
  });
});

describe('connections per user', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ maxConnectionsPerUser: 3, maxConnectionsPerClient: 1 });
    await addUser(server, 'capped-user', password);
    await addUser(server, 'other-user', password);
  });

  after(async () => {
    await server.close();
  });

  test('fourth browser connection gets 429 until one closes', async () => {
    const laptop = await scriptedLogin(server, 'capped-user', password);
    const phone = await scriptedLogin(server, 'capped-user', password);
    const sockets: GatewaySocket[] = [];
    try {
      sockets.push(await openBrowserSocket(server, laptop), await openBrowserSocket(server, laptop), await openBrowserSocket(server, phone));

      // The limit counts the user across sessions, so both sessions are rejected.
      assertRejected(await handshake(server, browserHeaders(server, laptop)), 429, 'too_many_connections');
      assertRejected(await handshake(server, browserHeaders(server, phone)), 429, 'too_many_connections');

      const other = await scriptedLogin(server, 'other-user', password);
      assert.equal((await handshake(server, browserHeaders(server, other))).status, 101, 'another user has their own slots');

      const closing = sockets.shift()!;
      await closing.close();
      await waitForServerClose(server, closing.welcome.connection_id);
      sockets.push(await openBrowserSocket(server, phone));
      assert.ok(sockets.every((socket) => socket.isOpen));
    } finally {
      await closeAll(sockets);
    }
  });

  test('browser connections ignore the per-client limit', async () => {
    // Every browser connection carries the gateway's own client id, so counting it per client would
    // let one browser tab lock out every other user.
    const session = await scriptedLogin(server, 'other-user', password);
    const sockets: GatewaySocket[] = [];
    try {
      sockets.push(await openBrowserSocket(server, session), await openBrowserSocket(server, session));
      assert.equal(sockets.length, 2);
    } finally {
      await closeAll(sockets);
    }
  });
});
