import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { scriptedLogin } from '../support/browser-login.ts';
import { rawHandshake } from '../support/raw-handshake.ts';
import { addUser, runCli, startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server.close();
});

function browserHandshake(session: { cookieHeader: string; csrfToken: string }) {
  return rawHandshake({
    port: server.port,
    ca: server.caPem,
    headers: { Cookie: session.cookieHeader, Origin: server.url, 'Sec-WebSocket-Protocol': `portcullis.v1, portcullis.csrf.${session.csrfToken}` },
  });
}

test('disable then enable keeps old sessions dead', async () => {
  await addUser(server, 'dora', 'first password 1');
  const session = await scriptedLogin(server, 'dora', 'first password 1');
  assert.equal((await browserHandshake(session)).status, 101);

  assert.equal((await runCli(server.dataDir, ['users', 'disable', 'dora'])).code, 0);
  assert.equal((await runCli(server.dataDir, ['users', 'enable', 'dora'])).code, 0);

  const afterEnable = await browserHandshake(session);
  assert.equal(afterEnable.status, 403);
  assert.equal(afterEnable.json?.error, 'token_revoked');
  const sessionResponse = await server.fetch(`${server.url}/session`, { headers: { cookie: session.cookieHeader } });
  assert.equal(sessionResponse.status, 401);

  const fresh = await scriptedLogin(server, 'dora', 'first password 1');
  assert.equal((await browserHandshake(fresh)).status, 101);
});

test('password change ends existing sessions', async () => {
  await addUser(server, 'piet', 'old password 123');
  const session = await scriptedLogin(server, 'piet', 'old password 123');

  const changed = await runCli(server.dataDir, ['users', 'passwd', 'piet', '--password-stdin'], 'new password 456\n');
  assert.equal(changed.code, 0, changed.stderr);
  assert.match(changed.stdout, /ended 1 session/);

  const handshake = await browserHandshake(session);
  assert.equal(handshake.status, 403);
  assert.equal(handshake.json?.error, 'token_revoked');
  const refresh = await server.fetch(`${server.url}/session/refresh`, { method: 'POST', headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken } });
  assert.equal(refresh.status, 401);

  await assert.rejects(scriptedLogin(server, 'piet', 'old password 123'));
  const fresh = await scriptedLogin(server, 'piet', 'new password 456');
  assert.equal((await browserHandshake(fresh)).status, 101);
});

test('gateway client id is reserved', async () => {
  for (const action of ['add', 'remove']) {
    const result = await runCli(server.dataDir, ['devices', action, 'portcullis-gateway']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /cannot be added or removed/);
  }
});

test('long CLI output is complete', async () => {
  for (let index = 0; index < 1500; index += 1) {
    await server.running.store.insertInto('users')
      .values({ username: `bulk-${index}`, password_hash: 'x', disabled: 0, created_at: 1 })
      .execute();
  }
  const listed = await runCli(server.dataDir, ['users', 'list', '--json']);
  assert.equal(listed.code, 0);
  const users = JSON.parse(listed.stdout) as unknown[];
  assert.ok(users.length >= 1500);
});
