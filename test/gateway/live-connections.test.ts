// Live connections against a real server over TLS: the `expiring` warning and the 4401 close at
// token expiry, refresh in band (devices) and through POST /session/refresh (browsers), in-band
// tokens of another identity, and `portcullis sessions list`.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { decodeJwt } from 'jose';

import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { addDevice, addUser, deviceToken, runCli, startTestServer, type TestServer } from '../support/server.ts';
import { commandsChannel, deviceRoundTrip, openBrowserSocket, openDeviceSocket, type GatewaySocket } from '../support/websocket.ts';

const username = 'live-user';
const password = 'live user has a long enough password';
const tokenLifetimeSeconds = 3;
const expiryWarningSeconds = 1;
// Longer than three token lifetimes, so a connection that outlives it was refreshed at least three times.
const keepAliveMs = 10_000;
// A safety stop for tests that wait for the server's expiry timer. No test asserts a duration.
const expiryTestTimeout = { timeout: 60_000 };

/** Refreshes a browser session and returns it with the new cookie and the refresh response. */
async function refreshSession(server: TestServer, session: ScriptedSession): Promise<{ session: ScriptedSession; expiresAt: number }> {
  const response = await server.fetch(`${server.url}/session/refresh`, {
    method: 'POST',
    headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken },
  });
  const body = await response.json() as { expires_at?: number; csrf_token?: string; error?: string };
  assert.equal(response.status, 200, `session refresh failed with ${body.error}`);

  const cookie = response.headers.getSetCookie().find((header) => header.startsWith('__Host-portcullis-session='));
  assert.ok(cookie, 'the refresh response sets no session cookie');
  const sessionToken = cookie.slice(cookie.indexOf('=') + 1, cookie.indexOf(';'));
  return {
    session: { sessionToken, csrfToken: body.csrf_token!, cookieHeader: `__Host-portcullis-session=${sessionToken}` },
    expiresAt: body.expires_at!,
  };
}

function assertStillOpen(socket: GatewaySocket): void {
  assert.equal(socket.closeInfo, null, `the socket closed with ${socket.closeInfo?.code} ${socket.closeInfo?.reason}`);
  assert.equal(socket.isOpen, true);
}

/**
 * Publishes to the device's own commands channel and waits for the message to come back, proving
 * the socket still carries data both ways under its current token.
 */
async function assertDeviceRoundTrip(socket: GatewaySocket): Promise<void> {
  const message = await deviceRoundTrip(socket, { marker: 'still-here' });

  assert.equal(message.channel, commandsChannel(socket.welcome.client_id));
  assert.deepEqual(message.data, { marker: 'still-here' });
  assert.deepEqual(message.publisher, { client_id: socket.welcome.client_id, sub: socket.welcome.sub });
}

/**
 * Subscribes a browser socket to a channel of its user and has the operator publish there, proving
 * the socket still carries requests and deliveries under its current token.
 */
async function assertBrowserReceives(server: TestServer, socket: GatewaySocket): Promise<void> {
  const channel = `users/${socket.welcome.sub}/inbox`;
  const subscribed = await socket.request({ type: 'subscribe', channel });
  assert.deepEqual(subscribed, { type: 'subscribed', id: subscribed.id, channel });

  server.running.publish(channel, { marker: 'still-here' });

  const message = await socket.nextFrameWhere((frame) => frame.type === 'message', `a message on ${channel}`);
  assert.equal(message.channel, channel);
  assert.deepEqual(message.data, { marker: 'still-here' });
  assert.deepEqual(message.publisher, { client_id: 'portcullis', sub: 'operator' });
}

describe('short-lived tokens', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ accessTokenTtlSeconds: tokenLifetimeSeconds, expiryWarningSeconds });
    await addUser(server, username, password);
  });

  after(async () => {
    await server.close();
  });

  test('idle device closed at expiry', expiryTestTimeout, async () => {
    const device = await addDevice(server, 'idle-device');
    const socket = await openDeviceSocket(server, { clientId: device.client_id, accessToken: await deviceToken(server, device) });

    const warning = await socket.nextFrame();
    assert.equal(warning.type, 'expiring');
    assert.equal(warning.expires_at, socket.welcome.expires_at);

    assert.deepEqual(await socket.waitForClose(), { code: 4401, reason: 'token_expired' });
    assert.deepEqual(socket.unreadFrames, []);
  });

  test('idle browser closed at expiry', expiryTestTimeout, async () => {
    const session = await scriptedLogin(server, username, password);
    const socket = await openBrowserSocket(server, session);
    assert.equal(socket.welcome.sub, username);

    const warning = await socket.nextFrame();
    assert.equal(warning.type, 'expiring');
    assert.equal(warning.expires_at, socket.welcome.expires_at);

    assert.deepEqual(await socket.waitForClose(), { code: 4401, reason: 'token_expired' });
  });

  test('device refreshed in band stays open', expiryTestTimeout, async () => {
    const device = await addDevice(server, 'refreshing-device');
    const socket = await openDeviceSocket(server, { clientId: device.client_id, accessToken: await deviceToken(server, device) });
    const openedAt = Date.now();
    let refreshes = 0;

    while (Date.now() - openedAt < keepAliveMs) {
      const warning = await socket.nextFrame();
      assert.equal(warning.type, 'expiring');

      const accessToken = await deviceToken(server, device);
      socket.send({ type: 'auth', token: accessToken });
      const reply = await socket.nextFrame();
      assert.equal(reply.type, 'auth_ok');
      assert.equal(reply.expires_at, decodeJwt(accessToken).exp);
      refreshes += 1;
    }

    assertStillOpen(socket);
    assert.ok(refreshes >= 3, `only ${refreshes} refreshes in three token lifetimes`);
    await assertDeviceRoundTrip(socket);
    await socket.close();
  });

  test('browser refreshed by session stays open', expiryTestTimeout, async () => {
    // The login takes part of the first token's lifetime, so the socket starts with a fresh token.
    let { session } = await refreshSession(server, await scriptedLogin(server, username, password));
    const socket = await openBrowserSocket(server, session);
    const openedAt = Date.now();
    let refreshes = 0;

    while (Date.now() - openedAt < keepAliveMs) {
      const warning = await socket.nextFrame();
      assert.equal(warning.type, 'expiring');

      const refreshed = await refreshSession(server, session);
      session = refreshed.session;
      // The browser sends nothing: the refresh endpoint moves its live socket to the new token.
      const reply = await socket.nextFrame();
      assert.equal(reply.type, 'auth_ok');
      assert.equal(reply.expires_at, refreshed.expiresAt);
      refreshes += 1;
    }

    assertStillOpen(socket);
    assert.ok(refreshes >= 3, `only ${refreshes} refreshes in three token lifetimes`);
    await assertBrowserReceives(server, socket);
    await socket.close();
  });
});

describe('in-band auth', () => {
  let server: TestServer;
  let device: { client_id: string; client_secret: string };

  before(async () => {
    server = await startTestServer();
    await addUser(server, username, password);
    device = await addDevice(server, 'in-band-device');
  });

  after(async () => {
    await server.close();
  });

  const foreignTokens: Array<[string, () => Promise<string>]> = [
    ['another device', async () => deviceToken(server, await addDevice(server, 'other-device'))],
    ['browser session', async () => (await scriptedLogin(server, username, password)).sessionToken],
    ['garbage', async () => 'not-a-jwt'],
    ['forged signature', async () => {
      const [header, payload] = (await deviceToken(server, device)).split('.');
      return `${header}.${payload}.${Buffer.alloc(64).toString('base64url')}`;
    }],
  ];

  for (const [name, tokenFor] of foreignTokens) {
    test(`${name} token closes 4403`, async () => {
      const socket = await openDeviceSocket(server, { clientId: device.client_id, accessToken: await deviceToken(server, device) });

      socket.send({ type: 'auth', token: await tokenFor() });

      assert.deepEqual(await socket.waitForClose(), { code: 4403, reason: 'token_invalid' });
      assert.deepEqual(socket.unreadFrames, []);
    });
  }

  test('own fresh token accepted', async () => {
    const socket = await openDeviceSocket(server, { clientId: device.client_id, accessToken: await deviceToken(server, device) });
    const accessToken = await deviceToken(server, device);

    socket.send({ type: 'auth', token: accessToken });

    const reply = await socket.nextFrame();
    assert.equal(reply.type, 'auth_ok');
    assert.equal(reply.expires_at, decodeJwt(accessToken).exp);
    await assertDeviceRoundTrip(socket);
    await socket.close();
  });

  test('sessions list shows connections', async () => {
    const notBefore = Math.floor(Date.now() / 1000);
    const deviceSocket = await openDeviceSocket(server, { clientId: device.client_id, accessToken: await deviceToken(server, device) });
    const browserSocket = await openBrowserSocket(server, await scriptedLogin(server, username, password));
    const notAfter = Math.ceil(Date.now() / 1000);

    const result = await runCli(server.dataDir, ['sessions', 'list', '--json']);
    assert.equal(result.code, 0, result.stderr);
    const listed = JSON.parse(result.stdout) as Array<Record<string, unknown>>;

    const expected = [
      { socket: deviceSocket, kind: 'device', sub: device.client_id, client_id: device.client_id, origin: device.client_id },
      { socket: browserSocket, kind: 'browser', sub: username, client_id: 'portcullis-gateway', origin: server.url },
    ];
    for (const { socket, ...fields } of expected) {
      const row = listed.find((entry) => entry.id === socket.welcome.connection_id);
      assert.ok(row, `connection ${socket.welcome.connection_id} (${fields.kind}) is not listed`);
      assert.equal(row.kind, fields.kind);
      assert.equal(row.sub, fields.sub);
      assert.equal(row.client_id, fields.client_id);
      assert.equal(row.origin, fields.origin);
      assert.equal(row.expires_at, socket.welcome.expires_at);
      assert.equal(typeof row.connected_at, 'number');
      assert.ok((row.connected_at as number) >= notBefore, `connected_at ${row.connected_at} is before ${notBefore}`);
      assert.ok((row.connected_at as number) <= notAfter, `connected_at ${row.connected_at} is after ${notAfter}`);
    }

    await deviceSocket.close();
    await browserSocket.close();
  });
});
