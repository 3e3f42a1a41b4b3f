// Attacks on refresh tokens and on the login form, each against a real server over TLS. A refresh
// token is reused after rotation, presented by another client, used after its user was disabled, or
// used twice at once. Passwords are guessed at one account and across accounts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { decodeJwt } from 'jose';
import { Agent } from 'undici';

import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { rememberSecret } from '../support/capture.ts';
import {
  approveDevice, fetchThrough, gatewayClientCredentials, redeemRefreshToken, tokensOf, type ClientCredentials, type IssuedGrant, type OauthResponse,
} from '../support/oauth-flows.ts';
import { rawHandshake, type RawResponse } from '../support/raw-handshake.ts';
import { addDevice, addUser, runServerCli, startTestServer, type TestServer } from '../support/server.ts';
import { browserHeaders, deviceHeaders, openBrowserSocket, openDeviceSocket, type GatewaySocket } from '../support/websocket.ts';

const sessionCookieName = '__Host-portcullis-session';

/** Rotates a device grant's refresh token once and returns the grant with the new tokens. */
async function rotate(server: TestServer, grant: IssuedGrant): Promise<IssuedGrant> {
  const tokens = tokensOf(await redeemRefreshToken(server, grant.client, grant.refreshToken));
  assert.notEqual(tokens.refreshToken, grant.refreshToken, 'the refresh token did not rotate');
  return { ...grant, ...tokens };
}

function openGrantSocket(server: TestServer, grant: IssuedGrant): Promise<GatewaySocket> {
  return openDeviceSocket(server, { clientId: grant.client.client_id, accessToken: grant.accessToken });
}

function assertInvalidGrant(response: OauthResponse, attack: string): void {
  assert.equal(response.status, 400, `${attack}: the token endpoint answered ${response.status}, not 400`);
  assert.match(response.contentType, /^application\/json/, `${attack}: the token endpoint error is not JSON`);
  assert.equal(response.body.error, 'invalid_grant', `${attack}: the token endpoint answered ${String(response.body.error)}, not invalid_grant`);
  assert.equal(response.body.access_token, undefined, `${attack}: the token endpoint issued an access token`);
  assert.equal(response.body.refresh_token, undefined, `${attack}: the token endpoint issued a refresh token`);
}

function assertHandshakeRevoked(handshake: RawResponse, attack: string): void {
  assert.equal(handshake.status, 403, `${attack}: a handshake with a token of the revoked grant got ${handshake.status}, not 403`);
  assert.equal(handshake.json?.error, 'token_revoked', `${attack}: the handshake was refused with ${String(handshake.json?.error)}, not token_revoked`);
}

/** Asserts that new handshakes with each access token of a device grant are refused as revoked. */
async function assertDeviceTokensRevoked(server: TestServer, clientId: string, accessTokens: string[], attack: string): Promise<void> {
  for (const accessToken of accessTokens) {
    const handshake = await rawHandshake({ port: server.port, ca: server.caPem, headers: deviceHeaders({ clientId, accessToken }) });
    assertHandshakeRevoked(handshake, attack);
  }
}

async function assertClosedAsRevoked(sockets: GatewaySocket[], attack: string): Promise<void> {
  for (const socket of sockets) {
    const closed = await socket.waitForClose().catch((error: Error) => assert.fail(`${attack}: a live socket of the grant stayed open (${error.message})`));
    assert.equal(closed.code, 4403, `${attack}: a live socket of the grant closed with ${closed.code}, not 4403`);
    assert.equal(closed.reason, 'token_revoked', `${attack}: a live socket of the grant closed with reason ${closed.reason}`);
  }
}

describe('refresh token attacks', () => {
  let server: TestServer;
  let gatewayClient: ClientCredentials;
  const password = 'refresh attack owners have long passwords';

  before(async () => {
    server = await startTestServer();
    for (const username of ['rotation-owner', 'browser-owner', 'victim-owner', 'disabled-owner', 'race-owner']) {
      await addUser(server, username, password);
    }

    // The browser's refresh token never leaves the server. These attacks assume an attacker who
    // copied the database, which contains both it and the gateway's client secret.
    gatewayClient = await gatewayClientCredentials(server);
  });

  after(async () => {
    await server.close();
  });

  async function login(username: string): Promise<ScriptedSession> {
    const session = await scriptedLogin(server, username, password);
    rememberSecret(session.sessionToken);
    rememberSecret(session.csrfToken);
    return session;
  }

  async function storedRefreshToken(grantId: string): Promise<string> {
    const row = await server.running.store.selectFrom('browser_sessions').select('refresh_token').where('grant_id', '=', grantId).executeTakeFirstOrThrow();
    rememberSecret(row.refresh_token);
    return row.refresh_token;
  }

  /** Rotates a browser session through `POST /session/refresh` and returns the session with the new cookie. */
  async function refreshSession(session: ScriptedSession): Promise<ScriptedSession> {
    const response = await server.fetch(`${server.url}/session/refresh`, { method: 'POST', headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken } });
    const body = await response.json() as { csrf_token?: string };
    assert.equal(response.status, 200, `the session refresh failed: ${JSON.stringify(body)}`);

    const setCookie = response.headers.getSetCookie().find((header) => header.startsWith(`${sessionCookieName}=`));
    const sessionToken = setCookie?.slice(sessionCookieName.length + 1, setCookie.indexOf(';')) ?? '';
    rememberSecret(sessionToken);
    return { sessionToken, csrfToken: body.csrf_token ?? '', cookieHeader: `${sessionCookieName}=${sessionToken}` };
  }

  async function assertSessionRevoked(session: ScriptedSession, attack: string): Promise<void> {
    assertHandshakeRevoked(await rawHandshake({ port: server.port, ca: server.caPem, headers: browserHeaders(server, session) }), attack);

    const response = await server.fetch(`${server.url}/session/refresh`, { method: 'POST', headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken } });
    const body = await response.json() as { error?: string };
    assert.equal(response.status, 401, `${attack}: the ended session could still be refreshed`);
    assert.equal(body.error, 'login_required', `${attack}: the session refresh answered ${String(body.error)}, not login_required`);
  }

  test('attack 9: device refresh token reused after rotation', async () => {
    const attack = 'device refresh token reuse';
    const first = await approveDevice(server, await addDevice(server, 'rotation-device'), 'rotation-owner');
    const firstSocket = await openGrantSocket(server, first);
    const second = await rotate(server, first);
    const secondSocket = await openGrantSocket(server, second);

    assertInvalidGrant(await redeemRefreshToken(server, first.client, first.refreshToken), attack);

    await assertClosedAsRevoked([firstSocket, secondSocket], attack);
    assertInvalidGrant(await redeemRefreshToken(server, second.client, second.refreshToken), `${attack} (newest refresh token)`);
    await assertDeviceTokensRevoked(server, first.client.client_id, [first.accessToken, second.accessToken], attack);
  });

  test('attack 9: browser refresh token reused after rotation', async () => {
    const attack = 'browser refresh token reuse';
    const session = await login('browser-owner');
    const grantId = decodeJwt(session.sessionToken).grant_id as string;
    const socket = await openBrowserSocket(server, session);
    const stolenRefreshToken = await storedRefreshToken(grantId);
    const refreshed = await refreshSession(session);
    const newestRefreshToken = await storedRefreshToken(grantId);
    assert.notEqual(newestRefreshToken, stolenRefreshToken, 'the session refresh did not rotate the refresh token');

    assertInvalidGrant(await redeemRefreshToken(server, gatewayClient, stolenRefreshToken), attack);

    await assertClosedAsRevoked([socket], attack);
    assertInvalidGrant(await redeemRefreshToken(server, gatewayClient, newestRefreshToken), `${attack} (newest refresh token)`);
    await assertSessionRevoked(refreshed, attack);
  });

  test('attack 9: device refresh token used by another device', async () => {
    const attack = 'refresh token of another device';
    const victim = await approveDevice(server, await addDevice(server, 'victim-device'), 'victim-owner');
    const thief = await addDevice(server, 'thief-device');
    const socket = await openGrantSocket(server, victim);

    assertInvalidGrant(await redeemRefreshToken(server, thief, victim.refreshToken), attack);

    await assertClosedAsRevoked([socket], attack);
    assertInvalidGrant(await redeemRefreshToken(server, victim.client, victim.refreshToken), `${attack} (by its own device afterwards)`);
    await assertDeviceTokensRevoked(server, victim.client.client_id, [victim.accessToken], attack);
  });

  test('attack 9: browser refresh token used by a device', async () => {
    const attack = 'browser refresh token used by a device';
    const session = await login('victim-owner');
    const socket = await openBrowserSocket(server, session);
    const stolenRefreshToken = await storedRefreshToken(decodeJwt(session.sessionToken).grant_id as string);
    const thief = await addDevice(server, 'session-thief-device');

    assertInvalidGrant(await redeemRefreshToken(server, thief, stolenRefreshToken), attack);

    await assertClosedAsRevoked([socket], attack);
    assertInvalidGrant(await redeemRefreshToken(server, gatewayClient, stolenRefreshToken), `${attack} (by the gateway afterwards)`);
    await assertSessionRevoked(session, attack);
  });

  test('attack 9: refresh token used after the user was disabled', async () => {
    const attack = 'refresh after the user was disabled';
    const grant = await rotate(server, await approveDevice(server, await addDevice(server, 'disabled-owner-device'), 'disabled-owner'));
    const session = await login('disabled-owner');
    const sockets = [await openGrantSocket(server, grant), await openBrowserSocket(server, session)];

    const disabled = await runServerCli(server, ['users', 'disable', 'disabled-owner']);
    assert.equal(disabled.code, 0, disabled.stderr);

    await assertClosedAsRevoked(sockets, attack);
    assertInvalidGrant(await redeemRefreshToken(server, grant.client, grant.refreshToken), attack);
    await assertDeviceTokensRevoked(server, grant.client.client_id, [grant.accessToken], attack);
    await assertSessionRevoked(session, attack);

    // Enabling the user again must not revive the grant.
    const enabled = await runServerCli(server, ['users', 'enable', 'disabled-owner']);
    assert.equal(enabled.code, 0, enabled.stderr);
    assertInvalidGrant(await redeemRefreshToken(server, grant.client, grant.refreshToken), `${attack} (after enable)`);
    await assertDeviceTokensRevoked(server, grant.client.client_id, [grant.accessToken], `${attack} (after enable)`);
  });

  test('attack 9: concurrent reuse from two connections', async () => {
    const attack = 'concurrent refresh token reuse';
    const grant = await approveDevice(server, await addDevice(server, 'race-device'), 'race-owner');
    const socket = await openGrantSocket(server, grant);

    // One agent per connection, both connected before the race, so the two requests leave together.
    const agents = [new Agent({ connect: { ca: server.caPem }, connections: 1 }), new Agent({ connect: { ca: server.caPem }, connections: 1 })];
    try {
      const fetchers = agents.map(fetchThrough);
      for (const fetchFn of fetchers) {
        const warmUp = await fetchFn(`${server.url}/healthz`);
        assert.equal(warmUp.status, 200, 'a connection for the race could not be opened');
        await warmUp.body?.cancel();
      }

      const results = await Promise.all(fetchers.map((fetchFn) => redeemRefreshToken(server, grant.client, grant.refreshToken, fetchFn)));

      const winners = results.filter((result) => result.status === 200);
      const losers = results.filter((result) => result.status !== 200);
      assert.equal(winners.length, 1, `${attack}: ${winners.length} of 2 concurrent refreshes succeeded, not exactly 1`);
      assertInvalidGrant(losers[0], attack);

      await assertClosedAsRevoked([socket], attack);
      const winner = tokensOf(winners[0]);
      assertInvalidGrant(await redeemRefreshToken(server, grant.client, winner.refreshToken), `${attack} (the winner's new refresh token)`);
      await assertDeviceTokensRevoked(server, grant.client.client_id, [grant.accessToken, winner.accessToken], attack);
    } finally {
      await Promise.all(agents.map((agent) => agent.close()));
    }
  });
});

/** Status, `Retry-After`, content type and page text of one login form submission. */
interface LoginResult {
  status: number;
  retryAfter: string | null;
  /** The `X-Portcullis-Error` header, the stable code behind the page. */
  errorCode: string | null;
  contentType: string;
  page: string;
}

/** The login form of one interaction, opened by a browser at one client IP address. */
class LoginForm {
  private constructor(private readonly server: TestServer, private readonly fetchFn: typeof fetch, private readonly action: string, private readonly csrfToken: string, private readonly cookieHeader: string) {}

  /** Follows `/login` to the login form over `fetchFn` and keeps the cookies of the interaction. */
  static async open(server: TestServer, fetchFn: typeof fetch): Promise<LoginForm> {
    const cookies = new Map<string, string>();
    const cookieHeader = () => [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');

    let response = await fetchFn(`${server.url}/login`);
    for (let hop = 0; hop < 10 && response.status === 303; hop += 1) {
      for (const header of response.headers.getSetCookie()) {
        const [pair] = header.split(';');
        cookies.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1));
      }
      await response.body?.cancel();
      response = await fetchFn(new URL(response.headers.get('location')!, server.url), { headers: { cookie: cookieHeader() } });
    }

    const page = await response.text();
    const action = /action="([^"]+)"/.exec(page)?.[1];
    const csrfToken = /name="csrf_token" value="([^"]+)"/.exec(page)?.[1];
    assert.equal(response.status, 200, 'the login form could not be opened');
    assert.ok(action, 'the login page has no form action');
    assert.ok(csrfToken, 'the login form has no CSRF token');
    return new LoginForm(server, fetchFn, action, csrfToken, cookieHeader());
  }

  /** Submits the form with one username and password. */
  async submit(username: string, password: string, extraHeaders: Record<string, string> = {}): Promise<LoginResult> {
    rememberSecret(password);
    const response = await this.fetchFn(new URL(this.action, this.server.url), {
      method: 'POST',
      headers: { ...extraHeaders, cookie: this.cookieHeader, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf_token: this.csrfToken, username, password }).toString(),
    });
    const page = await response.text();
    return {
      status: response.status,
      retryAfter: response.headers.get('retry-after'),
      errorCode: response.headers.get('x-portcullis-error'),
      contentType: response.headers.get('content-type') ?? '',
      page,
    };
  }
}

describe('login brute force', () => {
  // Linux routes all of 127.0.0.0/8 to the loopback interface, so binding a client socket to one of
  // these addresses lets the server see a distinct client IP without a proxy.
  const accountAttackerAddress = '127.0.0.10';
  const spreadAttackerAddress = '127.0.0.11';
  const userAddress = '127.0.0.20';
  const maxLockSeconds = 15 * 60;
  const realPassword = 'the real user types the right password';

  let server: TestServer;
  const agents: Agent[] = [];

  before(async () => {
    server = await startTestServer();
    for (const username of ['alice', 'bob', 'carol']) {
      await addUser(server, username, realPassword);
    }
  });

  after(async () => {
    await Promise.all(agents.map((agent) => agent.close()));
    await server.close();
  });

  /** Returns a fetch whose connections leave from `localAddress`, which the server takes as the client IP. */
  function fetchFrom(localAddress: string): typeof fetch {
    const agent = new Agent({ localAddress, connect: { ca: server.caPem } });
    agents.push(agent);
    return fetchThrough(agent);
  }

  function assertThrottled(result: LoginResult, attack: string): void {
    assert.equal(result.status, 429, `${attack}: the login form answered ${result.status}, not 429`);
    const retryAfter = Number(result.retryAfter);
    assert.ok(Number.isInteger(retryAfter), `${attack}: Retry-After is ${String(result.retryAfter)}, not a number of seconds`);
    assert.ok(retryAfter >= 1, `${attack}: Retry-After is ${retryAfter}, less than 1 second`);
    assert.ok(retryAfter <= maxLockSeconds, `${attack}: Retry-After is ${retryAfter}, more than the ${maxLockSeconds}-second lock`);
    // The form is for people, so the refusal is the login page with a notice (see docs/errors.md).
    assert.match(result.contentType, /^text\/html/, `${attack}: the throttled response is not the login page`);
    assert.match(result.page, /Too many failed attempts/, `${attack}: the throttled page does not say why`);
    assert.equal(result.errorCode, 'login_throttled', `${attack}: the throttled page does not carry X-Portcullis-Error: login_throttled`);
  }

  /** Logs in as `username` through the real form from `localAddress` and checks that the session works. */
  async function assertLoginWorks(username: string, localAddress: string, attack: string): Promise<void> {
    const userServer = { ...server, fetch: fetchFrom(localAddress) };
    const session = await scriptedLogin(userServer, username, realPassword)
      .catch((error: Error) => assert.fail(`${attack}: the real user could not log in from another IP (${error.message})`));
    rememberSecret(session.sessionToken);
    rememberSecret(session.csrfToken);

    const socket = await openBrowserSocket(server, session);
    assert.equal(socket.welcome.sub, username, `${attack}: the real user's session connected as ${socket.welcome.sub}`);
    await socket.close();
  }

  test('attack 10: 50 wrong passwords for one account', async () => {
    const attack = 'password guessing at one account';
    const form = await LoginForm.open(server, fetchFrom(accountAttackerAddress));

    const results: LoginResult[] = [];
    for (let guess = 0; guess < 50; guess += 1) {
      results.push(await form.submit('alice', `wrong guess number ${guess}`));
    }

    assert.deepEqual(results.slice(0, 5).map((result) => result.status), [401, 401, 401, 401, 401], `${attack}: the first five guesses were not checked as wrong passwords`);
    for (const result of results.slice(5)) {
      assertThrottled(result, attack);
    }
    // While the lock lasts the password is not checked, so the attacker cannot learn a right guess.
    assertThrottled(await form.submit('alice', realPassword), `${attack} (right password from the attacker's IP)`);
    assertThrottled(await form.submit('ALICE', 'a spelling variant of the name'), `${attack} (upper-case username)`);

    await assertLoginWorks('alice', userAddress, attack);
  });

  test('attack 10: wrong passwords across accounts from one IP', async () => {
    const attack = 'password guessing across accounts';
    const form = await LoginForm.open(server, fetchFrom(spreadAttackerAddress));
    const usernames = ['bob', 'carol', ...Array.from({ length: 18 }, (_, index) => `guessed-user-${index}`)];

    for (const username of usernames) {
      const result = await form.submit(username, 'one common password');
      assert.equal(result.status, 401, `${attack}: the guess for ${username} answered ${result.status}, not 401`);
      assert.equal(result.errorCode, 'login_failed', `${attack}: the failed login does not carry X-Portcullis-Error: login_failed`);
    }

    assertThrottled(await form.submit('guessed-user-new', 'one common password'), attack);
    assertThrottled(await form.submit('bob', realPassword), `${attack} (right password from the attacker's IP)`);
    // Without a trusted proxy, X-Forwarded-For is the client's own claim and must not move the count.
    assertThrottled(await form.submit('carol', 'one common password', { 'x-forwarded-for': userAddress }), `${attack} (forged X-Forwarded-For)`);

    await assertLoginWorks('bob', userAddress, attack);
  });
});
