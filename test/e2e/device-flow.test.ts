// The device authorization grant (RFC 8628) end to end: approval by the CLI and in the browser,
// refresh token rotation and reuse detection, private_key_jwt devices and bad client secrets.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';

import { rawHandshake } from '../support/raw-handshake.ts';
import { probeDeviceConnection, type SocketOutcome } from '../support/websocket.ts';
import { addDevice, addUser, runCli, startTestServer, type TestServer } from '../support/server.ts';

const deviceCodeGrantType = 'urn:ietf:params:oauth:grant-type:device_code';
const jwtBearerAssertionType = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const username = 'alice';
const password = 'alice has a long enough password';

interface DeviceCredentials {
  client_id: string;
  client_secret: string;
}

/** Status and parsed JSON body of one OAuth endpoint response. */
interface OauthResponse {
  status: number;
  body: Record<string, unknown>;
}

interface TokenSet {
  accessToken: string;
  refreshToken: string;
}

let server: TestServer;

before(async () => {
  server = await startTestServer();
  await addUser(server, username, password);
});

after(async () => {
  await server.close();
});

function basicAuthorization(device: DeviceCredentials): string {
  const pair = `${encodeURIComponent(device.client_id)}:${encodeURIComponent(device.client_secret)}`;
  return `Basic ${Buffer.from(pair).toString('base64')}`;
}

async function postForm(endpoint: string, form: Record<string, string>, authorization?: string): Promise<OauthResponse> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (authorization) {
    headers.authorization = authorization;
  }
  const response = await server.fetch(`${server.url}${endpoint}`, { method: 'POST', headers, body: new URLSearchParams(form).toString() });
  return { status: response.status, body: await response.json() as Record<string, unknown> };
}

/** Starts the device flow: POST /oauth/device/authorize with client_secret_basic; `scope` narrows the request. */
async function requestDeviceCode(device: DeviceCredentials, scope?: string): Promise<{ deviceCode: string; userCode: string }> {
  const { status, body } = await postForm('/oauth/device/authorize', scope === undefined ? {} : { scope }, basicAuthorization(device));
  assert.equal(status, 200, `device authorization failed: ${JSON.stringify(body)}`);
  assert.equal(typeof body.device_code, 'string');
  assert.equal(typeof body.user_code, 'string');
  assert.equal(body.verification_uri, `${server.url}/oauth/device`);
  return { deviceCode: body.device_code as string, userCode: body.user_code as string };
}

function pollToken(device: DeviceCredentials, deviceCode: string): Promise<OauthResponse> {
  return postForm('/oauth/token', { grant_type: deviceCodeGrantType, device_code: deviceCode }, basicAuthorization(device));
}

function refresh(device: DeviceCredentials, refreshToken: string): Promise<OauthResponse> {
  return postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: refreshToken }, basicAuthorization(device));
}

function tokenSet(response: OauthResponse): TokenSet {
  assert.equal(response.status, 200, `token request failed: ${JSON.stringify(response.body)}`);
  assert.equal(typeof response.body.access_token, 'string');
  assert.equal(typeof response.body.refresh_token, 'string');
  return { accessToken: response.body.access_token as string, refreshToken: response.body.refresh_token as string };
}

/** Runs the device flow with the operator approving through `portcullis devices approve`. */
async function approveWithCli(device: DeviceCredentials): Promise<TokenSet> {
  const { deviceCode, userCode } = await requestDeviceCode(device);
  const approval = await runCli(server.dataDir, ['devices', 'approve', userCode, '--user', username]);
  assert.equal(approval.code, 0, approval.stderr);
  return tokenSet(await pollToken(device, deviceCode));
}

/** Connects as a device over wss and reads the first frame. */
function connectDevice(clientId: string, accessToken: string): Promise<SocketOutcome> {
  return probeDeviceConnection(server.port, server.caPem, clientId, accessToken);
}

/** A scripted browser: a cookie jar that honours `Path`, and redirects followed by hand. */
class Browser {
  private readonly cookies = new Map<string, { name: string; value: string; path: string }>();
  /** How many times the auth server showed its login form. */
  loginFormsShown = 0;

  async get(target: string): Promise<Response> {
    return this.send(target, { method: 'GET' });
  }

  async post(target: string, form: Record<string, string>): Promise<Response> {
    return this.send(target, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
  }

  /** Follows redirects from `response` and logs in whenever the login form appears. Returns the last page. */
  async follow(response: Response): Promise<{ status: number; page: string }> {
    let current = response;
    for (let hop = 0; hop < 10; hop += 1) {
      if (current.status === 302 || current.status === 303) {
        current = await this.get(current.headers.get('location')!);
        continue;
      }

      const page = await current.text();
      const csrfToken = /name="csrf_token" value="([^"]+)"/.exec(page)?.[1];
      if (current.status !== 200 || !csrfToken) {
        return { status: current.status, page };
      }
      this.loginFormsShown += 1;
      const action = /action="([^"]+)"/.exec(page)![1];
      current = await this.post(action, { csrf_token: csrfToken, username, password });
    }
    throw new Error('more than 10 redirects');
  }

  private async send(target: string, init: RequestInit): Promise<Response> {
    const url = new URL(target, server.url);
    const cookie = [...this.cookies.values()]
      .filter((entry) => url.pathname.startsWith(entry.path))
      .map((entry) => `${entry.name}=${entry.value}`)
      .join('; ');
    const response = await server.fetch(url, { ...init, headers: { ...init.headers as Record<string, string>, cookie } });
    this.store(response);
    return response;
  }

  private store(response: Response): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attributes] = header.split(';').map((part) => part.trim());
      const separator = pair.indexOf('=');
      const name = pair.slice(0, separator);
      const value = pair.slice(separator + 1);
      const cookiePath = attributes.find((attribute) => /^path=/i.test(attribute))?.slice('path='.length) ?? '/';
      const key = `${cookiePath} ${name}`;
      if (value === '' || attributes.some((attribute) => /^max-age=0$/i.test(attribute) || /^expires=.*1970/i.test(attribute))) {
        this.cookies.delete(key);
        continue;
      }
      this.cookies.set(key, { name, value, path: cookiePath });
    }
  }
}

function formField(page: string, name: string): string {
  const value = new RegExp(`name="${name}" value="([^"]+)"`).exec(page)?.[1];
  assert.ok(value, `the page has no ${name} field`);
  return value;
}

/** Enters the user code on /oauth/device and submits the confirmation form with `choice`. */
async function submitUserCode(browser: Browser, userCode: string, choice: { confirm: string } | { abort: string }): Promise<{ status: number; page: string }> {
  const inputPage = await browser.get('/oauth/device');
  assert.equal(inputPage.status, 200);
  const xsrf = formField(await inputPage.text(), 'xsrf');

  const confirmPage = await browser.post('/oauth/device', { xsrf, user_code: userCode });
  assert.equal(confirmPage.status, 200);
  const page = await confirmPage.text();
  assert.ok(page.includes(userCode), 'the confirmation page does not show the user code');

  const submitted = await browser.post('/oauth/device', { xsrf: formField(page, 'xsrf'), user_code: formField(page, 'user_code'), ...choice });
  return browser.follow(submitted);
}

test('cli approval issues device tokens', async () => {
  const device = await addDevice(server, 'cli-approved-device');
  const { deviceCode, userCode } = await requestDeviceCode(device);

  const pending = await pollToken(device, deviceCode);
  assert.equal(pending.status, 400);
  assert.equal(pending.body.error, 'authorization_pending');

  const approval = await runCli(server.dataDir, ['devices', 'approve', userCode, '--user', username]);
  assert.equal(approval.code, 0, approval.stderr);

  const tokens = tokenSet(await pollToken(device, deviceCode));
  const header = decodeProtectedHeader(tokens.accessToken);
  assert.equal(header.alg, 'ES256');
  assert.equal(header.typ, 'at+jwt');
  const claims = decodeJwt(tokens.accessToken);
  assert.equal(claims.sub, username);
  assert.equal(claims.client_id, device.client_id);
  assert.equal(claims.aud, `${server.url}/ws`);
  // No scope requested: the device's registered (default) scopes, with `{sub}` meaning the user.
  assert.equal(claims.scope, 'publish:devices/{client_id}/# subscribe:devices/{client_id}/commands');
  assert.equal(typeof claims.grant_id, 'string');

  const outcome = await connectDevice(device.client_id, tokens.accessToken);
  assert.equal(outcome.status, 101, `rejected with ${outcome.error}`);
  assert.equal(outcome.welcome?.type, 'welcome');
  assert.equal(outcome.welcome?.sub, username);
  assert.equal(outcome.welcome?.client_id, device.client_id);
});

test('refresh token rotates', async () => {
  const device = await addDevice(server, 'rotating-device');
  const first = await approveWithCli(device);

  const second = tokenSet(await refresh(device, first.refreshToken));
  assert.notEqual(second.refreshToken, first.refreshToken);
  assert.notEqual(second.accessToken, first.accessToken);
  assert.equal(decodeJwt(second.accessToken).grant_id, decodeJwt(first.accessToken).grant_id);

  const third = tokenSet(await refresh(device, second.refreshToken));
  assert.notEqual(third.refreshToken, second.refreshToken);
});

test('reused refresh token revokes grant', async () => {
  const device = await addDevice(server, 'reusing-device');
  const first = await approveWithCli(device);
  const second = tokenSet(await refresh(device, first.refreshToken));
  const grantId = decodeJwt(first.accessToken).grant_id as string;

  const beforeReuse = await connectDevice(device.client_id, second.accessToken);
  assert.equal(beforeReuse.status, 101, `rejected with ${beforeReuse.error}`);

  const reuse = await refresh(device, first.refreshToken);
  assert.equal(reuse.status, 400);
  assert.equal(reuse.body.error, 'invalid_grant');

  const newest = await refresh(device, second.refreshToken);
  assert.equal(newest.status, 400);
  assert.equal(newest.body.error, 'invalid_grant');

  const denied = await server.running.store.selectFrom('revoked_grants').select('grant_id').where('grant_id', '=', grantId).executeTakeFirst();
  assert.equal(denied?.grant_id, grantId);

  for (const accessToken of [first.accessToken, second.accessToken]) {
    const handshake = await rawHandshake({ port: server.port, ca: server.caPem, headers: { Authorization: `Bearer ${accessToken}`, 'X-Client-Id': device.client_id } });
    assert.equal(handshake.status, 403);
    assert.equal(handshake.headers['x-portcullis-error'], 'token_revoked');
    assert.equal(handshake.json?.error, 'token_revoked');
  }
});

test('browser approval after login form', async () => {
  const device = await addDevice(server, 'browser-approved-device');
  const { deviceCode, userCode } = await requestDeviceCode(device);
  const browser = new Browser();

  const result = await submitUserCode(browser, userCode, { confirm: 'yes' });
  assert.equal(result.status, 200);
  assert.match(result.page, /Device connected/);
  assert.equal(browser.loginFormsShown, 1);

  const tokens = tokenSet(await pollToken(device, deviceCode));
  const claims = decodeJwt(tokens.accessToken);
  assert.equal(claims.sub, username);
  assert.equal(claims.client_id, device.client_id);

  const outcome = await connectDevice(device.client_id, tokens.accessToken);
  assert.equal(outcome.status, 101, `rejected with ${outcome.error}`);
  assert.equal(outcome.welcome?.sub, username);
});

test('device flow grants only the registered scopes it asks for', async () => {
  const device = await addDevice(server, 'narrow-device');
  const narrow = 'subscribe:devices/{client_id}/commands';

  const browserFlow = await requestDeviceCode(device, `${narrow} publish:devices/#`);
  const result = await submitUserCode(new Browser(), browserFlow.userCode, { confirm: 'yes' });
  assert.equal(result.status, 200);
  assert.equal(decodeJwt(tokenSet(await pollToken(device, browserFlow.deviceCode)).accessToken).scope, narrow);

  const cliFlow = await requestDeviceCode(device, narrow);
  const approval = await runCli(server.dataDir, ['devices', 'approve', cliFlow.userCode, '--user', username]);
  assert.equal(approval.code, 0, approval.stderr);
  assert.equal(decodeJwt(tokenSet(await pollToken(device, cliFlow.deviceCode)).accessToken).scope, narrow);

  // Nothing the device may hold: the CLI refuses to approve an empty grant.
  const unregistered = await requestDeviceCode(device, 'publish:devices/#');
  const refused = await runCli(server.dataDir, ['devices', 'approve', unregistered.userCode, '--user', username]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /scope_missing|no scope/);
});

test('approval asks password despite session', async () => {
  const device = await addDevice(server, 'session-approved-device');
  const browser = new Browser();
  const login = await browser.follow(await browser.get('/login'));
  assert.equal(login.status, 200);
  assert.equal(browser.loginFormsShown, 1);

  const { deviceCode, userCode } = await requestDeviceCode(device);
  const result = await submitUserCode(browser, userCode, { confirm: 'yes' });
  assert.equal(result.status, 200);
  assert.match(result.page, /Device connected/);
  // The browser already had a login session; approving a device still showed the login form.
  assert.equal(browser.loginFormsShown, 2);

  const tokens = tokenSet(await pollToken(device, deviceCode));
  assert.equal(decodeJwt(tokens.accessToken).sub, username);
});

test('browser denial returns access_denied', async () => {
  const device = await addDevice(server, 'denied-device');
  const { deviceCode, userCode } = await requestDeviceCode(device);

  await submitUserCode(new Browser(), userCode, { abort: 'yes' });

  const denied = await pollToken(device, deviceCode);
  assert.equal(denied.status, 400);
  assert.equal(denied.body.error, 'access_denied');
});

describe('private_key_jwt device', () => {
  const clientId = 'key-device';
  const tokenEndpoint = () => `${server.url}/oauth/token`;
  let privateKey: CryptoKey;
  let addOutput: Record<string, unknown>;

  before(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    privateKey = pair.privateKey;
    const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-key-'));
    const keyFile = path.join(keyDir, 'jwk.json');
    fs.writeFileSync(keyFile, JSON.stringify(await exportJWK(pair.publicKey)));

    const added = await runCli(server.dataDir, ['devices', 'add', clientId, '--public-key', keyFile]);
    fs.rmSync(keyDir, { recursive: true, force: true });
    assert.equal(added.code, 0, added.stderr);
    addOutput = JSON.parse(added.stdout) as Record<string, unknown>;
  });

  function clientAssertion(audience: string): Promise<string> {
    return new SignJWT({})
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(audience)
      .setJti(crypto.randomUUID())
      .setIssuedAt()
      .setExpirationTime('2m')
      .sign(privateKey);
  }

  function requestToken(assertion: string): Promise<OauthResponse> {
    return postForm('/oauth/token', {
      grant_type: 'client_credentials',
      client_id: clientId,
      client_assertion_type: jwtBearerAssertionType,
      client_assertion: assertion,
    });
  }

  for (const [name, audience] of [['token endpoint', tokenEndpoint], ['issuer', () => server.url]] as const) {
    test(`assertion for ${name} connects`, async () => {
      const response = await requestToken(await clientAssertion(audience()));
      assert.equal(response.status, 200, JSON.stringify(response.body));
      const accessToken = response.body.access_token as string;
      assert.equal(decodeJwt(accessToken).client_id, clientId);

      const outcome = await connectDevice(clientId, accessToken);
      assert.equal(outcome.status, 101, `rejected with ${outcome.error}`);
      assert.equal(outcome.welcome?.sub, clientId);
      assert.equal(outcome.welcome?.client_id, clientId);
    });
  }

  test('replayed assertion is rejected', async () => {
    const assertion = await clientAssertion(tokenEndpoint());
    const first = await requestToken(assertion);
    assert.equal(first.status, 200, JSON.stringify(first.body));

    const replay = await requestToken(assertion);
    assert.equal(replay.status, 401);
    assert.equal(replay.body.error, 'invalid_client');
  });

  test('devices list shows private_key_jwt', async () => {
    assert.deepEqual(addOutput, { client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', scope: 'publish:devices/{client_id}/# subscribe:devices/{client_id}/commands' });

    const listed = await runCli(server.dataDir, ['devices', 'list', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const entry = (JSON.parse(listed.stdout) as { client_id: string; auth_method: string }[]).find((row) => row.client_id === clientId);
    assert.equal(entry?.auth_method, 'private_key_jwt');
  });

  test('database stores no secret', async () => {
    const row = await server.running.store.selectFrom('devices').selectAll().where('client_id', '=', clientId).executeTakeFirst();
    assert.equal(row?.auth_method, 'private_key_jwt');
    assert.equal(row?.secret_hash, null);
    const { keys } = JSON.parse(row?.jwks ?? '{"keys":[]}') as { keys: Record<string, unknown>[] };
    assert.equal(keys.length, 1);
    assert.equal(keys[0].kty, 'EC');
    assert.equal('d' in keys[0], false);
  });
});

describe('wrong client secret', () => {
  const endpoints = [
    ['token endpoint', '/oauth/token', { grant_type: 'client_credentials' }],
    ['device authorization endpoint', '/oauth/device/authorize', {}],
  ] as const;

  for (const [name, endpoint, form] of endpoints) {
    test(`${name} answers invalid_client`, async () => {
      const device = await addDevice(server, `wrong-secret-${endpoint.split('/').pop()}`);
      const wrongSecret = crypto.randomBytes(32).toString('base64url');

      const response = await postForm(endpoint, form, basicAuthorization({ client_id: device.client_id, client_secret: wrongSecret }));
      assert.equal(response.status, 401);
      assert.equal(response.body.error, 'invalid_client');
      assert.equal(response.body.access_token, undefined);
      assert.equal(response.body.device_code, undefined);
      assert.deepEqual(server.logs.filter((line) => line.includes(wrongSecret)), []);
    });
  }
});
