// The channel scopes the auth server puts into tokens: a device's registered scopes, the subset a
// request names, and a user's scopes from the devices they own. The last tests cover what happens to
// an open browser connection and a new handshake once an owned device is removed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { decodeJwt } from 'jose';

import { scriptedLogin } from '../support/browser-login.ts';
import { addDevice, addUser, deviceToken, runCli, startTestServer, type TestServer } from '../support/server.ts';
import { openBrowserSocket } from '../support/websocket.ts';

const password = 'channel scope tests use a long password';
const defaultDeviceScope = 'publish:devices/{client_id}/# subscribe:devices/{client_id}/commands';
let server: TestServer;

before(async () => {
  server = await startTestServer();
  await addUser(server, 'alice', password);
  await addUser(server, 'bob', password);
});

after(async () => {
  await server?.close();
});

function scopeOf(token: string): string | undefined {
  return decodeJwt(token).scope as string | undefined;
}

test('device token carries registered scopes', async () => {
  const device = await addDevice(server, 'scoped-default');
  assert.equal(scopeOf(await deviceToken(server, device)), defaultDeviceScope);
});

test('requested subset narrows the token', async () => {
  const device = await addDevice(server, 'scoped-subset');
  const narrow = 'subscribe:devices/{client_id}/commands';
  assert.equal(scopeOf(await deviceToken(server, device, narrow)), narrow);
});

test('unregistered scopes are left out', async () => {
  const device = await addDevice(server, 'scoped-greedy');
  assert.equal(scopeOf(await deviceToken(server, device, 'publish:devices/#')), undefined);
  assert.equal(scopeOf(await deviceToken(server, device, 'publish:devices/# subscribe:devices/{client_id}/commands')), 'subscribe:devices/{client_id}/commands');
});

test('backend scopes come from --scope', async () => {
  const backend = await addDevice(server, 'scoped-backend', ['--scope', 'publish:devices/*/commands', '--scope', 'subscribe:devices/#']);
  assert.equal(scopeOf(await deviceToken(server, backend)), 'publish:devices/*/commands subscribe:devices/#');
});

test('admin:metrics scope from --scope', async () => {
  const scraper = await addDevice(server, 'scoped-scraper', ['--scope', 'admin:metrics', '--scope', 'subscribe:devices/#']);
  assert.equal(scopeOf(await deviceToken(server, scraper)), 'admin:metrics subscribe:devices/#');
  assert.equal(scopeOf(await deviceToken(server, scraper, 'admin:metrics')), 'admin:metrics');
});

test('invalid --scope values exit 2', async () => {
  for (const scope of ['admin:other', 'admin:metrics/x', 'read:devices/#', 'publish:Devices/x', 'subscribe:devices/#/x', 'publish:a/b/c/d/e/f/g/h/i', 'publish:devices/{client_id}-x/#', 'subscribe:{client_id}{sub}/#']) {
    const result = await runCli(server.dataDir, ['devices', 'add', 'scoped-invalid', '--scope', scope]);
    assert.equal(result.code, 2, `${scope}: ${result.stderr}`);
    assert.match(result.stderr, /--scope/);
  }
});

test('device and user names stay apart', async () => {
  const device = await runCli(server.dataDir, ['devices', 'add', 'alice']);
  assert.equal(device.code, 2);
  assert.match(device.stderr, /username/);

  await addDevice(server, 'scoped-named');
  const user = await runCli(server.dataDir, ['users', 'add', 'scoped-named', '--password-stdin'], `${password}\n`);
  assert.equal(user.code, 2);
  assert.match(user.stderr, /client id/);
});

test('reserved client ids are rejected', async () => {
  for (const id of ['portcullis', 'portcullis-gateway']) {
    const result = await runCli(server.dataDir, ['devices', 'add', id]);
    assert.equal(result.code, 2, `${id}: ${result.stderr}`);
    assert.match(result.stderr, /reserved_client_id|cannot be/);
  }
});

test('upper-case client ids are rejected', async () => {
  const result = await runCli(server.dataDir, ['devices', 'add', 'Sensor.1']);
  assert.equal(result.code, 2);
});

test('user scope lists owned devices', async () => {
  await addDevice(server, 'alice-meter', ['--owner', 'alice']);
  const alice = await scriptedLogin(server, 'alice', password);
  const bob = await scriptedLogin(server, 'bob', password);

  assert.deepEqual(scopeOf(alice.sessionToken)?.split(' '), ['subscribe:users/{sub}/#', 'subscribe:devices/alice-meter/#']);
  assert.deepEqual(scopeOf(bob.sessionToken)?.split(' '), ['subscribe:users/{sub}/#']);
});

test('removed device leaves its owner', async () => {
  await addDevice(server, 'alice-relay', ['--owner', 'alice']);
  const session = await scriptedLogin(server, 'alice', password);
  const socket = await openBrowserSocket(server, session);
  try {
    assert.equal((await socket.request({ type: 'subscribe', channel: 'devices/alice-relay/#' })).type, 'subscribed');
    assert.equal((await socket.request({ type: 'subscribe', channel: 'users/alice/inbox' })).type, 'subscribed');

    // Removing the device ends the subscription on the open socket, before any refresh.
    const removed = await runCli(server.dataDir, ['devices', 'remove', 'alice-relay']);
    assert.equal(removed.code, 0, removed.stderr);
    const dropped = await socket.nextFrameWhere((frame) => frame.type === 'unsubscribed', 'unsubscribed');
    assert.deepEqual({ channel: dropped.channel, reason: dropped.reason, id: dropped.id }, { channel: 'devices/alice-relay/#', reason: 'forbidden', id: null });
    const refused = await socket.request({ type: 'subscribe', channel: 'devices/alice-relay/#' });
    assert.equal(refused.code, 'forbidden');

    // The same id registered for bob: alice's unrefreshed session token still names the old scope,
    // and a new connection with it must not reach bob's device.
    await addDevice(server, 'alice-relay', ['--owner', 'bob']);
    const stale = await openBrowserSocket(server, session);
    try {
      assert.ok(!String(stale.welcome.scope).includes('alice-relay'), String(stale.welcome.scope));
      assert.equal((await stale.request({ type: 'subscribe', channel: 'devices/alice-relay/#' })).code, 'forbidden');

      // The same token sent in band is narrowed as at the handshake.
      const reauthenticated = await stale.request({ type: 'auth', token: session.sessionToken });
      assert.equal(reauthenticated.type, 'auth_ok');
      assert.ok(!String(reauthenticated.scope).includes('alice-relay'), String(reauthenticated.scope));
      assert.equal((await stale.request({ type: 'subscribe', channel: 'devices/alice-relay/#' })).code, 'forbidden');
    } finally {
      await stale.close();
    }

    // A refresh issues a token without the device, and the other subscription keeps delivering.
    const refresh = await server.fetch(`${server.url}/session/refresh`, {
      method: 'POST',
      headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken },
    });
    assert.equal(refresh.status, 200);
    await refresh.body?.cancel();
    const authOk = await socket.nextFrameWhere((frame) => frame.type === 'auth_ok', 'auth_ok');
    assert.ok(!String(authOk.scope).includes('alice-relay'));

    server.running.publish('users/alice/inbox', { still: 'subscribed' });
    const message = await socket.nextFrameWhere((frame) => frame.type === 'message', 'message');
    assert.equal(message.channel, 'users/alice/inbox');
  } finally {
    await socket.close();
  }
});
