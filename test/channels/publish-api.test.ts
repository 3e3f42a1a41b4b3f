// POST /api/publish against a real server over TLS: a backend client with registered publish scopes
// reaches live WebSocket subscribers, and every rejection has its status, code and challenge.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { importJWK, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { rawHandshake } from '../support/raw-handshake.ts';
import { addDevice, addUser, runCli, startTestServer, type TestServer } from '../support/server.ts';
import { openDeviceSocket } from '../support/websocket.ts';

const backendId = 'backend';
const backendScopes = 'publish:alerts/# publish:devices/*/commands';
const password = 'publish api tests use a long enough password';
// Marker inside published data; it must never reach a log line.
const dataMarker = `data-marker-${crypto.randomUUID()}`;

let server: TestServer;
let backendToken: string;
let session: ScriptedSession;
const issuedTokens: string[] = [];

/** Registers a device with `--scope` and returns a client-credentials token for the gateway resource. */
async function tokenWithScopes(clientId: string, scopes: string): Promise<string> {
  const device = await addDevice(server, clientId, ['--scope', scopes]);
  const response = await server.fetch(`${server.url}/oauth/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${device.client_id}:${device.client_secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: `${server.url}/ws` }).toString(),
  });
  const body = await response.json() as { access_token?: string; scope?: string };
  assert.equal(response.status, 200, `token request for ${clientId} failed`);
  issuedTokens.push(body.access_token!);
  return body.access_token!;
}

/** Status, headers and JSON body of one publish request. */
interface PublishResponse {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

async function publish(headers: Record<string, string>, body: string | undefined, path = '/api/publish'): Promise<PublishResponse> {
  const response = await server.fetch(`${server.url}${path}`, { method: 'POST', headers, body });
  return { status: response.status, headers: response.headers, body: await response.json() as Record<string, unknown> };
}

function bearer(token: string, contentType = 'application/json'): Record<string, string> {
  return { authorization: `Bearer ${token}`, 'content-type': contentType };
}

function assertError(response: PublishResponse, status: number, code: string): void {
  assert.equal(response.status, status);
  assert.equal(response.body.error, code);
  assert.equal(typeof response.body.error_description, 'string');
  assert.equal(response.headers.get('cache-control'), 'no-store');
}

before(async () => {
  server = await startTestServer();
  backendToken = await tokenWithScopes(backendId, backendScopes);
  await addUser(server, 'publish-user', password);
  session = await scriptedLogin(server, 'publish-user', password);
});

after(async () => {
  await server?.close();
});

describe('accepted publish', () => {
  test('reaches a live subscriber', async () => {
    const subscriberToken = await tokenWithScopes('meter-1', 'subscribe:alerts/#');
    const socket = await openDeviceSocket(server, { clientId: 'meter-1', accessToken: subscriberToken });
    try {
      socket.send({ type: 'subscribe', id: 1, channel: 'alerts/#' });
      assert.equal((await socket.nextFrame()).type, 'subscribed');

      const response = await publish(bearer(backendToken), JSON.stringify({ channel: 'alerts/fire', data: { marker: dataMarker } }));

      assert.equal(response.status, 202);
      assert.deepEqual(response.body, { channel: 'alerts/fire', delivered: 1 });
      const frame = await socket.nextFrame();
      assert.equal(frame.type, 'message');
      assert.equal(frame.channel, 'alerts/fire');
      assert.deepEqual(frame.data, { marker: dataMarker });
      assert.deepEqual(frame.publisher, { client_id: backendId, sub: backendId });
    } finally {
      await socket.close();
    }
  });

  test('counts zero without subscribers', async () => {
    const response = await publish(bearer(backendToken), JSON.stringify({ channel: 'devices/meter-9/commands', data: null }));

    assert.equal(response.status, 202);
    assert.deepEqual(response.body, { channel: 'devices/meter-9/commands', delivered: 0 });
  });

  test('accepts a charset parameter', async () => {
    const response = await publish(bearer(backendToken, 'application/json; charset=utf-8'), JSON.stringify({ channel: 'alerts/x', data: 1 }));

    assert.equal(response.status, 202);
  });

  test('logs channel.published without data', async () => {
    await publish(bearer(backendToken), JSON.stringify({ channel: 'alerts/logged', data: { marker: dataMarker } }));

    const line = server.logs.map((entry) => JSON.parse(entry) as Record<string, unknown>)
      .find((entry) => entry.event === 'channel.published' && entry.channel === 'alerts/logged');
    assert.ok(line, 'a channel.published line was written');
    assert.equal(line.client_id, backendId);
    assert.equal(line.delivered, 0);
    assert.equal(line.data, undefined);
  });
});

describe('credentials', () => {
  let serverKey: { key: CryptoKey; kid: string };

  before(async () => {
    const row = await server.running.store.selectFrom('signing_keys').selectAll().where('status', '=', 'active').executeTakeFirstOrThrow();
    serverKey = { key: await importJWK(JSON.parse(row.private_jwk) as JWK, 'ES256') as CryptoKey, kid: row.kid };
  });

  async function mintToken(claims: JWTPayload): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({
      iss: server.url,
      aud: `${server.url}/ws`,
      sub: backendId,
      client_id: backendId,
      jti: crypto.randomUUID(),
      scope: backendScopes,
      iat: now,
      exp: now + 300,
      ...claims,
    }).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: serverKey.kid }).sign(serverKey.key);
    issuedTokens.push(token);
    return token;
  }

  const body = JSON.stringify({ channel: 'alerts/fire', data: 1 });

  test('missing token gets 401 token_missing', async () => {
    const response = await publish({ 'content-type': 'application/json' }, body);

    assertError(response, 401, 'token_missing');
    assert.equal(response.headers.get('www-authenticate'), 'Bearer');
  });

  test('session cookie alone is rejected', async () => {
    const response = await publish({ cookie: session.cookieHeader, 'content-type': 'application/json' }, body);

    assertError(response, 401, 'token_missing');
    assert.equal(response.headers.get('www-authenticate'), 'Bearer');
  });

  test('CORS preflight is not approved', async () => {
    const response = await server.fetch(`${server.url}/api/publish`, {
      method: 'OPTIONS',
      headers: { origin: 'https://attacker.test', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    await response.body?.cancel();

    assert.equal(response.status, 404);
    assert.equal(response.headers.get('access-control-allow-origin'), null);
    assert.equal(response.headers.get('access-control-allow-headers'), null);
  });

  test('session token as Bearer is rejected', async () => {
    const response = await publish(bearer(session.sessionToken), body);

    assertError(response, 401, 'token_invalid');
    assert.equal(response.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
  });

  const invalidTokens: Array<[string, () => string | Promise<string>]> = [
    ['garbage', () => 'not-a-token'],
    ['bad signature', () => `${backendToken.slice(0, -4)}AAAA`],
    ['wrong audience', () => mintToken({ aud: 'https://elsewhere.test/ws' })],
  ];
  for (const [name, makeToken] of invalidTokens) {
    test(`${name} gets 401 token_invalid`, async () => {
      const response = await publish(bearer(await makeToken()), body);

      assertError(response, 401, 'token_invalid');
      assert.equal(response.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
    });
  }

  test('Basic credentials get 401 token_invalid', async () => {
    const response = await publish({ authorization: 'Basic YmFja2VuZDpzZWNyZXQ=', 'content-type': 'application/json' }, body);

    assertError(response, 401, 'token_invalid');
  });

  test('expired token gets 401 token_expired', async () => {
    const now = Math.floor(Date.now() / 1000);
    const response = await publish(bearer(await mintToken({ iat: now - 720, exp: now - 120 })), body);

    assertError(response, 401, 'token_expired');
    assert.equal(response.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
  });

  test('token in the URL gets 400 token_in_url', async () => {
    const response = await publish({ 'content-type': 'application/json' }, body, `/api/publish?access_token=${backendToken}`);

    assertError(response, 400, 'token_in_url');
  });

  test('any credential name in the URL gets 400 token_in_url', async () => {
    for (const query of ['token=x', 'jwt=x', 'refresh_token=x', `state=${backendToken}`]) {
      const response = await publish(bearer(backendToken), body, `/api/publish?${query}`);

      assertError(response, 400, 'token_in_url');
    }
  });

  test('two Authorization headers get 400 ambiguous_credentials', async () => {
    const response = await rawHandshake({
      port: server.port,
      ca: server.caPem,
      method: 'POST',
      path: '/api/publish',
      headers: {
        Upgrade: null,
        Connection: 'close',
        'Sec-WebSocket-Version': null,
        'Sec-WebSocket-Key': null,
        'Content-Type': 'application/json',
        'Content-Length': '0',
        Authorization: [`Bearer ${backendToken}`, `Bearer ${backendToken}`],
      },
    });

    assert.equal(response.status, 400);
    assert.equal(response.json?.error, 'ambiguous_credentials');
  });

  test('removed device gets 403 token_revoked', async () => {
    const token = await tokenWithScopes('doomed', 'publish:alerts/#');
    const removed = await runCli(server.dataDir, ['devices', 'remove', 'doomed']);
    assert.equal(removed.code, 0, removed.stderr);

    const response = await publish(bearer(token), body);

    assertError(response, 403, 'token_revoked');
  });
});

describe('permissions', () => {
  test('no publish scope gets 403 forbidden', async () => {
    const token = await tokenWithScopes('listener', 'subscribe:alerts/#');

    const response = await publish(bearer(token), JSON.stringify({ channel: 'alerts/fire', data: 1 }));

    assertError(response, 403, 'forbidden');
    assert.equal(response.headers.get('www-authenticate'), 'Bearer error="insufficient_scope"');
  });

  const outside = ['billing/invoices', 'alert/fire', 'devices/meter-1/telemetry', 'devices/meter-1/commands/extra'];
  for (const channel of outside) {
    test(`channel ${channel} outside the scopes gets 403`, async () => {
      const response = await publish(bearer(backendToken), JSON.stringify({ channel, data: 1 }));

      assertError(response, 403, 'forbidden');
      assert.equal(response.headers.get('www-authenticate'), 'Bearer error="insufficient_scope"');
    });
  }

  test('{client_id} scope allows only its own channels', async () => {
    const token = await tokenWithScopes('sensor-7', 'publish:devices/{client_id}/#');

    const own = await publish(bearer(token), JSON.stringify({ channel: 'devices/sensor-7/telemetry', data: 1 }));
    const other = await publish(bearer(token), JSON.stringify({ channel: 'devices/sensor-8/telemetry', data: 1 }));

    assert.equal(own.status, 202);
    assertError(other, 403, 'forbidden');
  });
});

describe('request body', () => {
  test('text/plain gets 415', async () => {
    const response = await publish(bearer(backendToken, 'text/plain'), JSON.stringify({ channel: 'alerts/fire', data: 1 }));

    assertError(response, 415, 'unsupported_media_type');
  });

  test('missing content type gets 415', async () => {
    const response = await publish({ authorization: `Bearer ${backendToken}` }, JSON.stringify({ channel: 'alerts/fire', data: 1 }));

    assertError(response, 415, 'unsupported_media_type');
  });

  test('body over max payload gets 413', async () => {
    const data = 'x'.repeat(server.options.maxPayloadBytes);

    const response = await publish(bearer(backendToken), JSON.stringify({ channel: 'alerts/fire', data }));

    assertError(response, 413, 'payload_too_large');
  });

  const malformed: Array<[string, string]> = [
    ['invalid JSON', '{"channel": "alerts/fire", '],
    ['empty body', ''],
    ['array body', '[]'],
    ['string body', '"alerts/fire"'],
    ['missing data', '{"channel": "alerts/fire"}'],
    ['missing channel', '{"data": 1}'],
    ['prototype key', '{"channel": "alerts/fire", "data": 1, "__proto__": {"x": 1}}'],
  ];
  for (const [name, body] of malformed) {
    test(`${name} gets 400 invalid_request`, async () => {
      const response = await publish(bearer(backendToken), body);

      assertError(response, 400, 'invalid_request');
    });
  }

  test('data nested 5000 deep gets 400 data_too_deep', async () => {
    const body = `{"channel":"alerts/fire","data":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const response = await publish(bearer(backendToken), body);

    assertError(response, 400, 'data_too_deep');
  });

  const badChannels: unknown[] = ['Alerts/fire', 'alerts//fire', 'alerts/*', 'alerts/#', '', 'a/b/c/d/e/f/g/h/i', `alerts/${'x'.repeat(200)}`, 42, null];
  for (const channel of badChannels) {
    test(`channel ${JSON.stringify(channel).slice(0, 30)} gets 400 invalid_channel`, async () => {
      const response = await publish(bearer(backendToken), JSON.stringify({ channel, data: 1 }));

      assertError(response, 400, 'invalid_channel');
    });
  }
});

test('no token or data in any log line', () => {
  assert.ok(issuedTokens.length > 3, 'the suite issued tokens');
  const secrets = [...issuedTokens, session.sessionToken, dataMarker];
  for (const line of server.logs) {
    for (const secret of secrets) {
      assert.ok(!line.includes(secret), `a log line contains a token or the data marker: ${line.slice(0, 120)}`);
    }
  }
});
