// A PostgreSQL outage and its end, against a PostgreSQL server of this test alone. While it is down,
// requests that need the database get 503 temporarily_unavailable with Retry-After, and open
// connections keep working. When the same server starts again on the same port, everything works
// again without a restart of Portcullis.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { sql } from 'kysely';

import { PortcullisError, unavailableRetryAfterSeconds } from '../../src/errors.ts';
import { epochSeconds } from '../../src/store/database.ts';
import { findDevice } from '../../src/store/devices.ts';
import { isConnectionFailure } from '../../src/store/postgres-outage.ts';
import { recordRevocation } from '../../src/store/revocation-events.ts';
import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { logEvents, waitForLogEvent } from '../support/cluster.ts';
import { rawHandshake } from '../support/raw-handshake.ts';
import { addDevice, addUser, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { ThrowawayPostgresServer } from '../support/throwaway-postgres.ts';
import { commandsChannel, openDeviceSocket, type DeviceCredentials, type Frame, type GatewaySocket } from '../support/websocket.ts';

const clientId = 'outage-meter';
const channel = commandsChannel(clientId);
const username = 'outage-user';
const password = 'postgres outage tests use a long enough password';

function errorWithCode(code: string, message = 'failed'): Error {
  return Object.assign(new Error(message), { code });
}

describe('isConnectionFailure', () => {
  const cases: [string, unknown, boolean][] = [
    ['refused connection', errorWithCode('ECONNREFUSED'), true],
    ['reset connection', errorWithCode('ECONNRESET'), true],
    ['admin shutdown 57P01', errorWithCode('57P01', 'terminating connection due to administrator command'), true],
    ['server starting up 57P03', errorWithCode('57P03', 'the database system is starting up'), true],
    ['connection exception 08006', errorWithCode('08006'), true],
    ['dropped connection', new Error('Connection terminated unexpectedly'), true],
    ['pool connect timeout', new Error('timeout exceeded when trying to connect'), true],
    ['refusal per address', new AggregateError([errorWithCode('ECONNREFUSED'), errorWithCode('ECONNREFUSED')], ''), true],
    ['refusal as a cause', new Error('Connection terminated due to connection timeout', { cause: errorWithCode('ETIMEDOUT') }), true],
    ['unique violation 23505', errorWithCode('23505', 'duplicate key value violates unique constraint'), false],
    ['wrong password 28P01', errorWithCode('28P01', 'password authentication failed'), false],
    ['syntax error 42601', errorWithCode('42601'), false],
    ['pool closed by the process', new Error('Cannot use a pool after calling end on the pool'), false],
    ['not an error', 'ECONNREFUSED', false],
  ];

  for (const [name, error, expected] of cases) {
    test(`${name} is ${expected ? '' : 'not '}a connection failure`, () => {
      assert.equal(isConnectionFailure(error), expected);
    });
  }
});

/** Basic credentials of a device, as a token request sends them. */
function basicAuthorization(device: { client_id: string; client_secret: string }): string {
  return `Basic ${Buffer.from(`${device.client_id}:${device.client_secret}`).toString('base64')}`;
}

describe('PostgreSQL outage', () => {
  let postgres: ThrowawayPostgresServer;
  let server: TestServer;
  let device: { client_id: string; client_secret: string };
  let credentials: DeviceCredentials;
  let socket: GatewaySocket;
  let session: ScriptedSession;
  const extraSockets: GatewaySocket[] = [];

  function tokenRequest(): Promise<Response> {
    return server.fetch(`${server.url}/oauth/token`, {
      method: 'POST',
      headers: { authorization: basicAuthorization(device), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
    });
  }

  function deviceHandshake(accessToken: string) {
    return rawHandshake({ port: server.port, ca: server.caPem, headers: { Authorization: `Bearer ${accessToken}`, 'X-Client-Id': clientId } });
  }

  function refreshSession(): Promise<Response> {
    return server.fetch(`${server.url}/session/refresh`, { method: 'POST', headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken } });
  }

  /** Publishes `data` as the operator and returns the `message` frame that reaches the open socket. */
  async function deliver(data: unknown): Promise<Frame> {
    assert.equal(server.running.publish(channel, data), 1);
    return socket.nextFrameWhere((frame) => frame.type === 'message' && JSON.stringify(frame.data) === JSON.stringify(data), `the message ${JSON.stringify(data)}`);
  }

  before(async () => {
    postgres = await ThrowawayPostgresServer.start();
    server = await startTestServer({ databaseUrl: postgres.url });
    device = await addDevice(server, clientId);
    credentials = { clientId, accessToken: await deviceToken(server, device) };
    socket = await openDeviceSocket(server, credentials);
    assert.equal((await socket.request({ type: 'subscribe', channel })).type, 'subscribed');
    await addUser(server, username, password);
    session = await scriptedLogin(server, username, password);
  });

  after(async () => {
    // The PostgreSQL server and both directories are removed even when closing a socket or the server fails.
    try {
      await Promise.all([socket, ...extraSockets].map((open) => open?.close()));
      await server?.close();
    } finally {
      if (server) {
        fs.rmSync(server.dataDir, { recursive: true, force: true });
      }
      await postgres?.destroy();
    }
  });

  test('stop fails a held connection', async () => {
    // A transaction keeps its connection between statements, where pg-pool listens to no errors
    // on it. The server ends that connection when it stops, which must not crash the process.
    let resumeTransaction!: () => void;
    const serverStopped = new Promise<void>((resolve) => { resumeTransaction = resolve; });
    let markFirstStatementDone!: () => void;
    const firstStatementDone = new Promise<void>((resolve) => { markFirstStatementDone = resolve; });
    const transaction = server.running.store.transaction().execute(async (trx) => {
      await sql`select 1`.execute(trx);
      markFirstStatementDone();
      await serverStopped;
      await sql`select 1`.execute(trx);
    });

    await firstStatementDone;
    await postgres.stop();
    resumeTransaction();
    await assert.rejects(transaction, (error: unknown) => error instanceof PortcullisError && error.code === 'temporarily_unavailable');
  });

  test('outage is logged once', async () => {

    // The revocation poll reads the database twice a second, so it notices the outage first.
    const unavailable = await waitForLogEvent(server, 'store.unavailable');
    await waitForLogEvent(server, 'revocation.poll_failed');
    assert.equal(logEvents(server, 'store.unavailable').length, 1);
    assert.equal(typeof (unavailable.err as { message?: unknown }).message, 'string');
  });

  test('store rejects with temporarily_unavailable', async () => {
    await assert.rejects(findDevice(server.running.store, clientId), (error: unknown) => {
      assert.ok(error instanceof PortcullisError);
      assert.equal(error.code, 'temporarily_unavailable');
      assert.equal(isConnectionFailure(error.cause), true);
      return true;
    });
  });

  test('token request answers 503', async () => {
    const response = await tokenRequest();
    const body = await response.json() as { error?: string; error_description?: string; access_token?: string };

    assert.equal(response.status, 503);
    assert.equal(body.error, 'temporarily_unavailable');
    assert.equal(typeof body.error_description, 'string');
    assert.equal(body.access_token, undefined);
    assert.equal(response.headers.get('retry-after'), String(unavailableRetryAfterSeconds));
  });

  test('device authorization answers 503', async () => {
    const response = await server.fetch(`${server.url}/oauth/device/authorize`, {
      method: 'POST',
      headers: { authorization: basicAuthorization(device), 'content-type': 'application/x-www-form-urlencoded' },
      body: '',
    });
    const body = await response.json() as { error?: string };

    assert.equal(response.status, 503);
    assert.equal(body.error, 'temporarily_unavailable');
    assert.equal(response.headers.get('retry-after'), String(unavailableRetryAfterSeconds));
  });

  test('handshake answers 503', async () => {
    const response = await deviceHandshake(credentials.accessToken);

    assert.equal(response.status, 503);
    assert.equal(response.json?.error, 'temporarily_unavailable');
    assert.equal(response.headers['x-portcullis-error'], 'temporarily_unavailable');
    assert.equal(response.headers['retry-after'], String(unavailableRetryAfterSeconds));
  });

  test('publish API answers 503', async () => {
    const response = await server.fetch(`${server.url}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${credentials.accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data: { during: 'outage' } }),
    });
    const body = await response.json() as { error?: string };

    assert.equal(response.status, 503);
    assert.equal(body.error, 'temporarily_unavailable');
    assert.equal(response.headers.get('retry-after'), String(unavailableRetryAfterSeconds));
  });

  test('browser session routes answer 503', async () => {
    const current = await server.fetch(`${server.url}/session`, { headers: { cookie: session.cookieHeader } });
    const refreshed = await refreshSession();

    assert.equal(current.status, 503);
    assert.equal((await current.json() as { error?: string }).error, 'temporarily_unavailable');
    assert.equal(refreshed.status, 503);
    assert.equal((await refreshed.json() as { error?: string }).error, 'temporarily_unavailable');
    assert.equal(refreshed.headers.get('set-cookie'), null);
    assert.equal(current.headers.get('retry-after'), String(unavailableRetryAfterSeconds));
    assert.equal(refreshed.headers.get('retry-after'), String(unavailableRetryAfterSeconds));
  });

  test('open socket keeps working', async () => {
    const data = { during: crypto.randomUUID() };

    const message = await deliver(data);
    assert.deepEqual(message.data, data);
    const published = await socket.request({ type: 'publish', channel, data: { from: 'device' } });
    assert.equal(published.type, 'published');
    assert.equal(socket.isOpen, true);
    assert.equal(logEvents(server, 'http.server_error').length, 0);
    assert.equal(logEvents(server, 'auth.server_error').length, 0);
    assert.equal(logEvents(server, 'handshake.failed').length, 0);
  });

  test('server recovers after restart', async () => {
    await postgres.start();

    // The pool dropped every connection that the stopped server ended, so the first request works.
    const response = await tokenRequest();
    const body = await response.json() as { access_token?: string };
    assert.equal(response.status, 200);
    assert.equal(typeof body.access_token, 'string');

    const fresh = await openDeviceSocket(server, { clientId, accessToken: body.access_token! });
    extraSockets.push(fresh);
    assert.equal(fresh.welcome.client_id, clientId);
    // The outage did not end the browser session: its refresh token still works.
    const refreshed = await refreshSession();
    assert.equal(refreshed.status, 200);
    await waitForLogEvent(server, 'store.restored');
    await waitForLogEvent(server, 'revocation.poll_resumed');
    assert.equal(socket.isOpen, true);
  });

  test('revocation poll closes sockets again', async () => {
    // Written straight to the database, so only the server's poll of revocation events can apply it.
    await recordRevocation(server.running.store, { kind: 'client', value: clientId, reason: 'outage_test', expiresAt: epochSeconds() + 60 });

    const closed = await socket.waitForClose();
    assert.equal(closed.code, 4403);
    const applied = await waitForLogEvent(server, 'revocation.applied', (entry) => entry.kind === 'client');
    assert.equal(applied.source, 'database');
  });
});
