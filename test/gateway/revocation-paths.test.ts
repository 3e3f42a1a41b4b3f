// Every way to revoke access closes the live sockets it covers with 4403 `token_revoked`, and a new
// handshake with the still-unexpired access token gets 403 `token_revoked`. The deny-list survives a
// restart. The tests run against a real server over TLS, and management commands run through the
// real CLI.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout } from 'node:timers/promises';

import { decodeJwt } from 'jose';

import { scriptedLogin } from '../support/browser-login.ts';
import { rawHandshake, type RawResponse } from '../support/raw-handshake.ts';
import { addDevice, addUser, deviceToken, runCli, startTestServer, type TestServer } from '../support/server.ts';
import {
  browserHeaders,
  commandsChannel,
  deviceHeaders,
  deviceRoundTrip,
  openBrowserSocket,
  openDeviceSocket,
  type DeviceCredentials,
  type GatewaySocket,
} from '../support/websocket.ts';

const deviceCodeGrantType = 'urn:ietf:params:oauth:grant-type:device_code';
const password = 'revocation tests use a long enough password';

/** Client id and secret printed by `portcullis devices add`. */
interface DeviceSecret {
  client_id: string;
  client_secret: string;
}

/** Tokens of a device-flow grant. */
interface GrantTokens {
  accessToken: string;
  refreshToken: string;
  grantId: string;
}

/** Status and parsed JSON body of one OAuth endpoint response. The body is `{}` when the response has none. */
interface OauthResponse {
  status: number;
  body: Record<string, unknown>;
}

function basicAuthorization(device: DeviceSecret): string {
  const pair = `${encodeURIComponent(device.client_id)}:${encodeURIComponent(device.client_secret)}`;
  return `Basic ${Buffer.from(pair).toString('base64')}`;
}

async function postForm(server: TestServer, endpoint: string, form: Record<string, string>, device: DeviceSecret): Promise<OauthResponse> {
  const response = await server.fetch(`${server.url}${endpoint}`, {
    method: 'POST',
    headers: { authorization: basicAuthorization(device), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? {} : JSON.parse(text) as Record<string, unknown> };
}

function grantTokens(response: OauthResponse): GrantTokens {
  assert.equal(response.status, 200, `token request failed: ${JSON.stringify(response.body)}`);
  const accessToken = response.body.access_token as string;
  return { accessToken, refreshToken: response.body.refresh_token as string, grantId: decodeJwt(accessToken).grant_id as string };
}

/** Runs the device flow (RFC 8628) with the operator approving through `portcullis devices approve`. */
async function approveDevice(server: TestServer, device: DeviceSecret, username: string): Promise<GrantTokens> {
  const authorization = await postForm(server, '/oauth/device/authorize', { scope: 'gateway' }, device);
  assert.equal(authorization.status, 200, `device authorization failed: ${JSON.stringify(authorization.body)}`);

  const approval = await runCli(server.dataDir, ['devices', 'approve', authorization.body.user_code as string, '--user', username]);
  assert.equal(approval.code, 0, approval.stderr);

  const tokens = grantTokens(await postForm(server, '/oauth/token', { grant_type: deviceCodeGrantType, device_code: authorization.body.device_code as string }, device));
  assert.equal(typeof tokens.grantId, 'string');
  return tokens;
}

function refresh(server: TestServer, device: DeviceSecret, refreshToken: string): Promise<OauthResponse> {
  return postForm(server, '/oauth/token', { grant_type: 'refresh_token', refresh_token: refreshToken }, device);
}

function deviceHandshake(server: TestServer, device: DeviceCredentials): Promise<RawResponse> {
  return rawHandshake({ port: server.port, ca: server.caPem, headers: deviceHeaders(device) });
}

function assertRejectedAsRevoked(response: RawResponse): void {
  assert.equal(response.status, 403);
  assert.equal(response.headers['x-portcullis-error'], 'token_revoked');
  assert.equal(response.json?.error, 'token_revoked');
}

async function assertClosedAsRevoked(socket: GatewaySocket): Promise<void> {
  assert.deepEqual(await socket.waitForClose(), { code: 4403, reason: 'token_revoked' });
}

/**
 * Publishes to the device's own commands channel and waits for the message to come back. Frames on
 * one socket are ordered, so a close sent earlier would arrive first and fail the round trip.
 */
async function assertDeviceRoundTrip(socket: GatewaySocket): Promise<void> {
  const message = await deviceRoundTrip(socket, 'still connected');

  assert.equal(message.channel, commandsChannel(socket.welcome.client_id));
  assert.equal(message.data, 'still connected');
}

/** Waits until the clock has passed the whole second `epochSeconds`. */
async function waitForNextSecond(epochSeconds: number): Promise<void> {
  while (Date.now() / 1000 < epochSeconds + 1) {
    await setTimeout(50);
  }
}

async function runCliOk(server: TestServer, args: string[]): Promise<string> {
  const result = await runCli(server.dataDir, args);
  assert.equal(result.code, 0, `portcullis ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

describe('revocation paths', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });

  after(async () => {
    await server.close();
  });

  test('browser logout', async () => {
    await addUser(server, 'logout-user', password);
    const session = await scriptedLogin(server, 'logout-user', password);
    const socket = await openBrowserSocket(server, session);

    const response = await server.fetch(`${server.url}/logout`, {
      method: 'POST',
      headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken },
    });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { logged_out: true });

    await assertClosedAsRevoked(socket);
    assertRejectedAsRevoked(await rawHandshake({ port: server.port, ca: server.caPem, headers: browserHeaders(server, session) }));
  });

  test('devices remove', async () => {
    const device = await addDevice(server, 'removed-device');
    const credentials = { clientId: device.client_id, accessToken: await deviceToken(server, device) };
    const socket = await openDeviceSocket(server, credentials);

    await runCliOk(server, ['devices', 'remove', device.client_id]);

    await assertClosedAsRevoked(socket);
    assertRejectedAsRevoked(await deviceHandshake(server, credentials));
  });

  test('devices remove then add again', async () => {
    const removed = await addDevice(server, 'reissued-device');
    const oldCredentials = { clientId: removed.client_id, accessToken: await deviceToken(server, removed) };
    await runCliOk(server, ['devices', 'remove', removed.client_id]);
    // A token issued in the same second as the new registration cannot be distinguished from the new device's tokens.
    await waitForNextSecond(decodeJwt(oldCredentials.accessToken).iat!);

    const readded = await addDevice(server, 'reissued-device');

    assertRejectedAsRevoked(await deviceHandshake(server, oldCredentials));
    const fresh = await deviceHandshake(server, { clientId: readded.client_id, accessToken: await deviceToken(server, readded) });
    assert.equal(fresh.status, 101);
  });

  test('sessions revoke device-flow grant', async () => {
    await addUser(server, 'grant-user', password);
    const device = await addDevice(server, 'grant-device');
    const tokens = await approveDevice(server, device, 'grant-user');
    const credentials = { clientId: device.client_id, accessToken: tokens.accessToken };
    const socket = await openDeviceSocket(server, credentials);

    await runCliOk(server, ['sessions', 'revoke', tokens.grantId]);

    await assertClosedAsRevoked(socket);
    assertRejectedAsRevoked(await deviceHandshake(server, credentials));
    const refreshed = await refresh(server, device, tokens.refreshToken);
    assert.equal(refreshed.status, 400);
    assert.equal(refreshed.body.error, 'invalid_grant');
  });

  test('sessions revoke grant id with dash', async () => {
    // Grant ids are base64url, so some start with "-". The inserted row represents such a grant,
    // because the auth server picks grant ids at random.
    const grantId = '-dash-leading-grant-id';
    await server.running.store.insertInto('oidc_payloads')
      .values({ model: 'Grant', id: grantId, payload: '{}', grant_id: null, user_code: null, uid: null, expires_at: null, consumed_at: null })
      .execute();

    const output = await runCliOk(server, ['sessions', 'revoke', grantId]);

    assert.match(output, /Revoked grant -dash-leading-grant-id/);
    const denied = await server.running.store.selectFrom('revoked_grants').select('grant_id').where('grant_id', '=', grantId).executeTakeFirst();
    assert.equal(denied?.grant_id, grantId);
  });

  test('sessions revoke client-credentials connection', async () => {
    const device = await addDevice(server, 'connection-device');
    const credentials = { clientId: device.client_id, accessToken: await deviceToken(server, device) };
    const socket = await openDeviceSocket(server, credentials);

    await runCliOk(server, ['sessions', 'revoke', socket.welcome.connection_id]);

    await assertClosedAsRevoked(socket);
    assertRejectedAsRevoked(await deviceHandshake(server, credentials));
    // Only that one token is revoked: the device itself is still registered.
    const fresh = await deviceHandshake(server, { clientId: device.client_id, accessToken: await deviceToken(server, device) });
    assert.equal(fresh.status, 101);
  });

  test('users disable', async () => {
    await addUser(server, 'disabled-user', password);
    const session = await scriptedLogin(server, 'disabled-user', password);
    const browserSocket = await openBrowserSocket(server, session);
    const actingDevice = await addDevice(server, 'acting-device');
    const actingCredentials = { clientId: actingDevice.client_id, accessToken: (await approveDevice(server, actingDevice, 'disabled-user')).accessToken };
    const actingSocket = await openDeviceSocket(server, actingCredentials);
    const unrelatedDevice = await addDevice(server, 'unrelated-device');
    const unrelatedCredentials = { clientId: unrelatedDevice.client_id, accessToken: await deviceToken(server, unrelatedDevice) };
    const unrelatedSocket = await openDeviceSocket(server, unrelatedCredentials);

    await runCliOk(server, ['users', 'disable', 'disabled-user']);

    await assertClosedAsRevoked(browserSocket);
    await assertClosedAsRevoked(actingSocket);
    // The revocation closed both sockets in one pass, so the unrelated socket would have its close frame queued already.
    await assertDeviceRoundTrip(unrelatedSocket);
    assert.equal(unrelatedSocket.closeInfo, null);

    assertRejectedAsRevoked(await rawHandshake({ port: server.port, ca: server.caPem, headers: browserHeaders(server, session) }));
    assertRejectedAsRevoked(await deviceHandshake(server, actingCredentials));
    assert.equal((await deviceHandshake(server, unrelatedCredentials)).status, 101);
    await unrelatedSocket.close();
  });

  test('revocation endpoint with refresh token', async () => {
    await addUser(server, 'revoking-user', password);
    const device = await addDevice(server, 'revoking-device');
    const tokens = await approveDevice(server, device, 'revoking-user');
    const credentials = { clientId: device.client_id, accessToken: tokens.accessToken };
    const socket = await openDeviceSocket(server, credentials);

    // RFC 7009: the device authenticates with client_secret_basic and hints the token type.
    const revoked = await postForm(server, '/oauth/revoke', { token: tokens.refreshToken, token_type_hint: 'refresh_token' }, device);
    assert.equal(revoked.status, 200);

    await assertClosedAsRevoked(socket);
    assertRejectedAsRevoked(await deviceHandshake(server, credentials));
    const refreshed = await refresh(server, device, tokens.refreshToken);
    assert.equal(refreshed.status, 400);
    assert.equal(refreshed.body.error, 'invalid_grant');
  });

  test('refresh token reuse', async () => {
    await addUser(server, 'reuse-user', password);
    const device = await addDevice(server, 'reuse-device');
    const first = await approveDevice(server, device, 'reuse-user');
    const second = grantTokens(await refresh(server, device, first.refreshToken));
    assert.equal(second.grantId, first.grantId);
    const credentials = { clientId: device.client_id, accessToken: second.accessToken };
    const socket = await openDeviceSocket(server, credentials);

    const reuse = await refresh(server, device, first.refreshToken);
    assert.equal(reuse.status, 400);
    assert.equal(reuse.body.error, 'invalid_grant');

    await assertClosedAsRevoked(socket);
    assertRejectedAsRevoked(await deviceHandshake(server, credentials));
    assertRejectedAsRevoked(await deviceHandshake(server, { clientId: device.client_id, accessToken: first.accessToken }));
  });
});

describe('deny-list across restart', () => {
  let first: TestServer;
  let second: TestServer | undefined;

  before(async () => {
    first = await startTestServer();
  });

  after(async () => {
    await second?.close();
  });

  test('revoked grant stays revoked', async () => {
    await addUser(first, 'restart-user', password);
    const device = await addDevice(first, 'restart-device');
    const tokens = await approveDevice(first, device, 'restart-user');
    const credentials = { clientId: device.client_id, accessToken: tokens.accessToken };
    assert.equal((await deviceHandshake(first, credentials)).status, 101);

    await runCliOk(first, ['sessions', 'revoke', tokens.grantId]);
    assertRejectedAsRevoked(await deviceHandshake(first, credentials));
    await first.close();

    second = await startTestServer({ dataDir: first.dataDir, port: first.port });
    assert.equal(second.url, first.url);
    assertRejectedAsRevoked(await deviceHandshake(second, credentials));
  });
});
