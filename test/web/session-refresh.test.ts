// POST /session/refresh against a real server over TLS: the cookie and CSRF guards, the rotated
// session cookie, twenty concurrent refreshes of one session, expired cookies, and refresh after
// logout.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout } from 'node:timers/promises';

import { decodeJwt } from 'jose';

import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { addUser, startTestServer, type TestServer } from '../support/server.ts';

const sessionCookieName = '__Host-portcullis-session';
const password = 'session refresh tests use a long enough password';
const concurrentRefreshes = 20;

/** Status, JSON body and new session cookie of one refresh response. */
interface RefreshResult {
  status: number;
  body: { expires_at?: number; csrf_token?: string; error?: string };
  /** The full `Set-Cookie` header of the session cookie, or undefined when none was set. */
  setCookie: string | undefined;
  /** The token in that cookie, or undefined. */
  sessionToken: string | undefined;
}

async function postRefresh(server: TestServer, headers: Record<string, string>): Promise<RefreshResult> {
  const response = await server.fetch(`${server.url}/session/refresh`, { method: 'POST', headers });
  const setCookie = response.headers.getSetCookie().find((header) => header.startsWith(`${sessionCookieName}=`));
  const sessionToken = setCookie?.slice(sessionCookieName.length + 1, setCookie.indexOf(';'));
  return { status: response.status, body: await response.json() as RefreshResult['body'], setCookie, sessionToken };
}

function refreshSession(server: TestServer, session: ScriptedSession): Promise<RefreshResult> {
  return postRefresh(server, { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken });
}

function withToken(session: ScriptedSession, sessionToken: string): ScriptedSession {
  return { ...session, sessionToken, cookieHeader: `${sessionCookieName}=${sessionToken}` };
}

function grantIdOf(session: ScriptedSession): string {
  return decodeJwt(session.sessionToken).grant_id as string;
}

function alterLastCharacter(value: string): string {
  return value.slice(0, -1) + (value.endsWith('A') ? 'B' : 'A');
}

async function storedRefreshToken(server: TestServer, grantId: string): Promise<string | undefined> {
  const row = await server.running.store.selectFrom('browser_sessions').select('refresh_token').where('grant_id', '=', grantId).executeTakeFirst();
  return row?.refresh_token;
}

async function sessionStatus(server: TestServer, session: ScriptedSession): Promise<number> {
  const response = await server.fetch(`${server.url}/session`, { headers: { cookie: session.cookieHeader } });
  await response.body?.cancel();
  return response.status;
}

describe('session refresh', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
    await addUser(server, 'refresh-user', password);
  });

  after(async () => {
    await server.close();
  });

  test('no cookie is login_required', async () => {
    const result = await postRefresh(server, { 'x-csrf-token': 'anything' });

    assert.equal(result.status, 401);
    assert.equal(result.body.error, 'login_required');
    assert.equal(result.setCookie, undefined);
  });

  const csrfVariants: Array<[string, (session: ScriptedSession) => Record<string, string>]> = [
    ['missing', (session) => ({ cookie: session.cookieHeader })],
    ['wrong', (session) => ({ cookie: session.cookieHeader, 'x-csrf-token': alterLastCharacter(session.csrfToken) })],
    ['empty', (session) => ({ cookie: session.cookieHeader, 'x-csrf-token': '' })],
  ];

  for (const [name, headersFor] of csrfVariants) {
    test(`${name} csrf token is csrf_invalid`, async () => {
      const session = await scriptedLogin(server, 'refresh-user', password);
      const refreshTokenBefore = await storedRefreshToken(server, grantIdOf(session));

      const result = await postRefresh(server, headersFor(session));

      assert.equal(result.status, 403);
      assert.equal(result.body.error, 'csrf_invalid');
      assert.equal(result.setCookie, undefined);
      assert.equal(await storedRefreshToken(server, grantIdOf(session)), refreshTokenBefore, 'the session was rotated without a valid CSRF token');
    });
  }

  test('csrf token of another session is csrf_invalid', async () => {
    const session = await scriptedLogin(server, 'refresh-user', password);
    const other = await scriptedLogin(server, 'refresh-user', password);

    const result = await postRefresh(server, { cookie: session.cookieHeader, 'x-csrf-token': other.csrfToken });

    assert.equal(result.status, 403);
    assert.equal(result.body.error, 'csrf_invalid');
    assert.equal(result.setCookie, undefined);
  });

  test('refresh rotates session cookie', async () => {
    const session = await scriptedLogin(server, 'refresh-user', password);
    const refreshTokenBefore = await storedRefreshToken(server, grantIdOf(session));

    const result = await refreshSession(server, session);

    assert.equal(result.status, 200);
    assert.equal(typeof result.body.expires_at, 'number');
    assert.equal(typeof result.body.csrf_token, 'string');
    assert.ok(result.setCookie, 'the response sets no session cookie');
    assert.match(result.setCookie, /; Secure/i);
    assert.match(result.setCookie, /; HttpOnly/i);
    assert.match(result.setCookie, /; SameSite=Strict/i);
    assert.match(result.setCookie, /; Path=\//i);
    assert.notEqual(result.sessionToken, session.sessionToken);

    const claims = decodeJwt(result.sessionToken!);
    assert.equal(claims.exp, result.body.expires_at);
    assert.equal(claims.grant_id, grantIdOf(session));
    assert.equal(claims.sub, 'refresh-user');
    assert.notEqual(await storedRefreshToken(server, grantIdOf(session)), refreshTokenBefore, 'the stored refresh token did not rotate');

    const refreshed = withToken({ ...session, csrfToken: result.body.csrf_token! }, result.sessionToken!);
    assert.equal(await sessionStatus(server, refreshed), 200);
    assert.equal((await refreshSession(server, refreshed)).status, 200);
  });

  test('concurrent refreshes all succeed', async () => {
    const session = await scriptedLogin(server, 'refresh-user', password);
    const grantId = grantIdOf(session);

    const results = await Promise.all(Array.from({ length: concurrentRefreshes }, () => refreshSession(server, session)));

    assert.deepEqual(results.map((result) => result.status), Array(concurrentRefreshes).fill(200));
    for (const result of results) {
      assert.ok(result.sessionToken, 'a successful refresh set no session cookie');
      assert.notEqual(result.sessionToken, session.sessionToken);
    }
    const newest = results.map((result) => result.sessionToken!).sort((a, b) => decodeJwt(b).exp! - decodeJwt(a).exp!)[0];
    assert.equal(await sessionStatus(server, withToken(session, newest)), 200);

    // Refresh-token reuse would have revoked the grant, which deletes its OAuth rows and writes a deny-list entry.
    const grant = await server.running.store.selectFrom('oidc_payloads').select('id').where('model', '=', 'Grant').where('id', '=', grantId).executeTakeFirst();
    assert.equal(grant?.id, grantId, 'the grant was deleted');
    const refreshTokens = await server.running.store.selectFrom('oidc_payloads').select('id').where('model', '=', 'RefreshToken').where('grant_id', '=', grantId).execute();
    assert.ok(refreshTokens.length > 0, 'the grant has no refresh token left');
    const denied = await server.running.store.selectFrom('revoked_grants').select('grant_id').where('grant_id', '=', grantId).executeTakeFirst();
    assert.equal(denied, undefined, 'the grant is on the deny-list');

    assert.equal((await refreshSession(server, withToken(session, newest))).status, 200);
  });

  test('refresh after logout is login_required', async () => {
    const session = await scriptedLogin(server, 'refresh-user', password);
    const logout = await server.fetch(`${server.url}/logout`, {
      method: 'POST',
      headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken },
    });
    assert.equal(logout.status, 200);
    await logout.body?.cancel();

    const result = await refreshSession(server, session);

    assert.equal(result.status, 401);
    assert.equal(result.body.error, 'login_required');
    assert.notEqual(result.setCookie, undefined, 'the response does not clear the session cookie');
    assert.match(result.setCookie!, /Max-Age=0/i);
    assert.equal(await storedRefreshToken(server, grantIdOf(session)), undefined);
  });
});

describe('expired session cookie', () => {
  let server: TestServer;

  before(async () => {
    // No leeway, so GET /session shows exactly when the cookie's token has expired.
    server = await startTestServer({ accessTokenTtlSeconds: 5, clockLeewaySeconds: 0 });
    await addUser(server, 'expired-user', password);
  });

  after(async () => {
    await server.close();
  });

  test('expired cookie still refreshes', { timeout: 60_000 }, async () => {
    const session = await scriptedLogin(server, 'expired-user', password);
    while (await sessionStatus(server, session) === 200) {
      await setTimeout(250);
    }
    assert.equal(await sessionStatus(server, session), 401);

    const result = await refreshSession(server, session);

    assert.equal(result.status, 200, `refresh failed with ${result.body.error}`);
    assert.ok(result.sessionToken);
    assert.equal(await sessionStatus(server, withToken(session, result.sessionToken)), 200);
  });
});
