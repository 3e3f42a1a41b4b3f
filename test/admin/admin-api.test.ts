import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { rawHandshake } from '../support/raw-handshake.ts';
import { addDevice, addUser, deviceToken, runServerCli, startTestServer, type TestServer } from '../support/server.ts';
import { openBrowserSocket, openDeviceSocket, socketWaitMs, type GatewaySocket } from '../support/websocket.ts';
import { rememberSecret } from '../support/capture.ts';
import { setUserAdmin } from '../../src/store/users.ts';

const adminName = 'ada';
const adminPassword = 'an admin test password';
const userName = 'uma';
const userPassword = 'a plain user test password';

let server: TestServer;
let admin: ScriptedSession;
let plainUser: ScriptedSession;
const openSockets: GatewaySocket[] = [];

before(async () => {
  server = await startTestServer();
  rememberSecret(adminPassword);
  const added = await runServerCli(server, ['users', 'add', adminName, '--password-stdin', '--admin'], `${adminPassword}\n`);
  assert.equal(added.code, 0, added.stderr);
  await addUser(server, userName, userPassword);
  admin = await scriptedLogin(server, adminName, adminPassword);
  plainUser = await scriptedLogin(server, userName, userPassword);
});

after(async () => {
  await Promise.all(openSockets.map((socket) => socket.close()));
  await server?.close();
});

async function connectDevice(clientId: string): Promise<GatewaySocket> {
  const credentials = await addDevice(server, clientId);
  const socket = await openDeviceSocket(server, { clientId, accessToken: await deviceToken(server, credentials) });
  openSockets.push(socket);
  return socket;
}

function adminGet(path: string, session: ScriptedSession | null = admin): Promise<Response> {
  return server.fetch(`${server.url}${path}`, { headers: session ? { cookie: session.cookieHeader } : {} });
}

function adminPost(path: string, session: ScriptedSession | null = admin, csrfToken: string | null = session?.csrfToken ?? null): Promise<Response> {
  const headers: Record<string, string> = {};
  if (session) {
    headers.cookie = session.cookieHeader;
  }
  if (csrfToken !== null) {
    headers['x-csrf-token'] = csrfToken;
  }
  return server.fetch(`${server.url}${path}`, { method: 'POST', headers });
}

async function listConnections(query = ''): Promise<Array<{ id: string; kind: string; sub: string; client_id: string; origin: string | null }>> {
  const response = await adminGet(`/admin/api/connections${query}`);
  assert.equal(response.status, 200);
  return (await response.json() as { connections: Array<{ id: string; kind: string; sub: string; client_id: string; origin: string | null }> }).connections;
}

/** Reads stored audit events named `event` until `count` of them exist or `socketWaitMs` passes. */
async function waitForAuditEvents(event: string, count: number): Promise<Array<Record<string, unknown>>> {
  const deadline = Date.now() + socketWaitMs;
  for (;;) {
    const rows = await server.running.store.selectFrom('audit_events').select('fields').where('event', '=', event).execute();
    if (rows.length >= count || Date.now() > deadline) {
      return rows.map((row) => JSON.parse(row.fields) as Record<string, unknown>);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('no session gets login_required', async () => {
  const list = await adminGet('/admin/api/connections', null);
  const revoke = await adminPost('/admin/api/connections/any/revoke', null);

  assert.equal(list.status, 401);
  assert.equal((await list.json() as { error: string }).error, 'login_required');
  assert.equal(revoke.status, 401);
  assert.equal((await revoke.json() as { error: string }).error, 'login_required');
});

test('non-admin gets forbidden', async () => {
  const socket = await connectDevice('forbidden-probe');

  for (const path of ['/admin/api/connections', '/admin/api/rejections', '/admin/api/series']) {
    const response = await adminGet(path, plainUser);
    assert.equal(response.status, 403, path);
    assert.equal((await response.json() as { error: string }).error, 'forbidden', path);
  }
  const revoke = await adminPost(`/admin/api/connections/${socket.welcome.connection_id}/revoke`, plainUser);

  assert.equal(revoke.status, 403);
  assert.equal((await revoke.json() as { error: string }).error, 'forbidden');
  assert.equal(socket.isOpen, true);
});

test('missing or foreign CSRF token is rejected', async () => {
  const socket = await connectDevice('csrf-probe');
  const path = `/admin/api/connections/${socket.welcome.connection_id}/revoke`;

  const missing = await adminPost(path, admin, null);
  const foreign = await adminPost(path, admin, plainUser.csrfToken);

  assert.equal(missing.status, 403);
  assert.equal((await missing.json() as { error: string }).error, 'csrf_invalid');
  assert.equal(foreign.status, 403);
  assert.equal((await foreign.json() as { error: string }).error, 'csrf_invalid');
  assert.equal(socket.isOpen, true);
});

test('connections filter by device, user and origin', async () => {
  const device = await connectDevice('filter-thermostat');
  const browser = await openBrowserSocket(server, plainUser);
  openSockets.push(browser);

  const byDevice = await listConnections('?device=filter-thermo');
  const byUser = await listConnections(`?user=${userName}`);
  const byOrigin = await listConnections(`?origin=${encodeURIComponent(server.url)}`);
  const none = await listConnections('?device=no-such-device');

  assert.deepEqual(byDevice.map((connection) => connection.id), [device.welcome.connection_id]);
  assert.ok(byUser.some((connection) => connection.id === browser.welcome.connection_id));
  assert.ok(byUser.every((connection) => connection.sub.includes(userName)));
  assert.ok(byOrigin.some((connection) => connection.id === browser.welcome.connection_id));
  assert.ok(byOrigin.every((connection) => connection.origin === server.url));
  assert.deepEqual(await listConnections('?origin=filter-thermostat'), []);
  assert.deepEqual(none, []);
});

test('revoke closes the device socket with 4403', async () => {
  const socket = await connectDevice('revoked-sensor');
  const logsBefore = server.logs.length;

  const response = await adminPost(`/admin/api/connections/${socket.welcome.connection_id}/revoke`);
  const closed = await socket.waitForClose();

  assert.equal(response.status, 200);
  assert.equal((await response.json() as { revoked: boolean }).revoked, true);
  assert.equal(closed.code, 4403);
  const logged = server.logs.slice(logsBefore).map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.event === 'admin.session_revoked');
  assert.equal(logged.length, 1);
  assert.equal(logged[0].admin, adminName);
  const stored = await waitForAuditEvents('admin.session_revoked', 1);
  assert.equal(stored.length, 1);
  assert.equal(stored[0].admin, adminName);
  assert.equal(stored[0].connection_id, socket.welcome.connection_id);
});

test('revoke of an unknown connection is not_found', async () => {
  const response = await adminPost('/admin/api/connections/no-such-connection/revoke');

  assert.equal(response.status, 404);
  assert.equal((await response.json() as { error: string }).error, 'not_found');
});

test('disable device closes its socket and removes it', async () => {
  const socket = await connectDevice('disabled-pump');

  const response = await adminPost('/admin/api/devices/disabled-pump/disable');
  const closed = await socket.waitForClose();
  const again = await adminPost('/admin/api/devices/disabled-pump/disable');

  assert.equal(response.status, 200);
  assert.equal(closed.code, 4403);
  const stored = await server.running.store.selectFrom('devices').select('client_id').where('client_id', '=', 'disabled-pump').executeTakeFirst();
  assert.equal(stored, undefined);
  assert.equal(again.status, 404);
  const events = await waitForAuditEvents('admin.device_disabled', 1);
  assert.deepEqual(events, [{ admin: adminName, client_id: 'disabled-pump' }]);
});

test('disable user closes the user socket', async () => {
  const victimPassword = 'a victim test password';
  await addUser(server, 'vic', victimPassword);
  const victim = await scriptedLogin(server, 'vic', victimPassword);
  const socket = await openBrowserSocket(server, victim);
  openSockets.push(socket);

  const response = await adminPost('/admin/api/users/vic/disable');
  const closed = await socket.waitForClose();

  assert.equal(response.status, 200);
  assert.equal(closed.code, 4403);
  const user = await server.running.store.selectFrom('users').select('disabled').where('username', '=', 'vic').executeTakeFirstOrThrow();
  assert.equal(user.disabled, 1);
  const afterDisable = await server.fetch(`${server.url}/session`, { headers: { cookie: victim.cookieHeader } });
  assert.equal(afterDisable.status, 401);
  const events = await waitForAuditEvents('admin.user_disabled', 1);
  assert.deepEqual(events, [{ admin: adminName, username: 'vic' }]);
});

test('rejections are grouped by code', async () => {
  const badOrigin = { Cookie: plainUser.cookieHeader, Origin: 'https://elsewhere.example', 'Sec-WebSocket-Protocol': `portcullis.v1, portcullis.csrf.${plainUser.csrfToken}` };
  const badToken = { Authorization: 'Bearer not-a-token', 'X-Client-Id': 'nobody', 'Sec-WebSocket-Protocol': 'portcullis.v1' };
  const statuses = [
    (await rawHandshake({ port: server.port, ca: server.caPem, headers: badOrigin })).status,
    (await rawHandshake({ port: server.port, ca: server.caPem, headers: badOrigin })).status,
    (await rawHandshake({ port: server.port, ca: server.caPem, headers: badToken })).status,
  ];
  assert.deepEqual(statuses, [403, 403, 401]);
  await waitForAuditEvents('handshake.rejected', 3);

  const response = await adminGet('/admin/api/rejections');
  const body = await response.json() as { rejections: Array<{ code: string; count: number }> };

  assert.equal(response.status, 200);
  assert.deepEqual(body.rejections.find((entry) => entry.code === 'origin_not_allowed'), { code: 'origin_not_allowed', count: 2 });
  assert.deepEqual(body.rejections.find((entry) => entry.code === 'token_invalid'), { code: 'token_invalid', count: 1 });
});

test('series has sixty minutes', async () => {
  const response = await adminGet('/admin/api/series');
  const { points } = await response.json() as { points: Array<{ minute: number; connections: number | null; rejections: number }> };

  assert.equal(response.status, 200);
  assert.equal(points.length, 60);
  assert.equal(points[1].minute - points[0].minute, 60_000);
  const current = points.at(-1)!;
  assert.notEqual(current.connections, null, 'the current minute has a connection sample');
  assert.ok(current.connections! >= 1, `current connections ${current.connections}`);
  const rejectionTotal = points.reduce((sum, point) => sum + point.rejections, 0);
  assert.ok(rejectionTotal >= 3, `expected at least 3 rejections, got ${rejectionTotal}`);
});

test('role is read on every request', async () => {
  assert.equal((await adminGet('/admin/api/connections')).status, 200);

  await setUserAdmin(server.running.store, adminName, false);
  const withdrawn = await adminGet('/admin/api/connections');
  await setUserAdmin(server.running.store, adminName, true);
  const granted = await adminGet('/admin/api/connections');

  assert.equal(withdrawn.status, 403);
  assert.equal((await withdrawn.json() as { error: string }).error, 'forbidden');
  assert.equal(granted.status, 200);
});

// Runs last, because it ends the admin's session.
test('users admin --off ends the admin session', async () => {
  const socket = await openBrowserSocket(server, admin);
  openSockets.push(socket);

  const result = await runServerCli(server, ['users', 'admin', adminName, '--off']);
  const closed = await socket.waitForClose();
  const response = await adminGet('/admin/api/connections');

  assert.equal(result.code, 0, result.stderr);
  assert.equal(closed.code, 4403);
  assert.equal(response.status, 401);
  const user = await server.running.store.selectFrom('users').select('admin').where('username', '=', adminName).executeTakeFirstOrThrow();
  assert.equal(user.admin, 0);
});
