import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';

import { generateKeyPair, importJWK, SignJWT, UnsecuredJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

import type { ErrorCode } from '../../src/errors.ts';
import { buildHandshakeChecks } from '../../src/gateway/guard/index.ts';
import { createDpopVerifier } from '../../src/gateway/dpop/verifier.ts';
import { MemoryReplayCache } from '../../src/gateway/dpop/replay-cache.ts';
import { transportCheck } from '../../src/gateway/guard/transport.ts';
import type { HandshakeState } from '../../src/gateway/handshake.ts';
import { rejectUpgrade } from '../../src/gateway/reject.ts';
import type { Store } from '../../src/store/database.ts';
import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { rawHandshake, type RawResponse } from '../support/raw-handshake.ts';
import { addDevice, addUser, deviceToken, runCli, startTestServer, type TestServer } from '../support/server.ts';

const deviceId = 'gate-device';
const password = 'a long enough password';

let server: TestServer;
let deviceAccessToken: string;
let serverKey: { key: CryptoKey; kid: string; publicJwk: JWK };
let primary: ScriptedSession;
let other: ScriptedSession;

before(async () => {
  server = await startTestServer();
  deviceAccessToken = await deviceToken(server, await addDevice(server, deviceId));

  const row = await server.running.store.selectFrom('signing_keys').selectAll().where('status', '=', 'active').executeTakeFirstOrThrow();
  const privateJwk = JSON.parse(row.private_jwk) as JWK;
  const { d: _d, ...publicJwk } = privateJwk;
  serverKey = { key: await importJWK(privateJwk, 'ES256') as CryptoKey, kid: row.kid, publicJwk };

  await addUser(server, 'gate-user', password);
  primary = await scriptedLogin(server, 'gate-user', password);
  other = await scriptedLogin(server, 'gate-user', password);
});

after(async () => {
  await server.close();
});

function handshake(headers: Record<string, string | string[] | null>, path = '/ws'): Promise<RawResponse> {
  return rawHandshake({ port: server.port, ca: server.caPem, path, headers });
}

function deviceHeaders(token = deviceAccessToken): Record<string, string> {
  return { Authorization: `Bearer ${token}`, 'X-Client-Id': deviceId };
}

function browserHeaders(session: ScriptedSession): Record<string, string> {
  return { Cookie: session.cookieHeader, Origin: server.url, 'Sec-WebSocket-Protocol': `portcullis.v1, portcullis.csrf.${session.csrfToken}` };
}

/** Asserts a rejected handshake (status, JSON error, `X-Portcullis-Error`, no upgrade), then that a valid device still connects. */
async function assertRejected(response: RawResponse, status: number, code: ErrorCode): Promise<void> {
  assert.equal(response.status, status);
  assert.equal(response.json?.error, code);
  assert.equal(response.headers['x-portcullis-error'], code);
  assert.equal(response.headers['sec-websocket-accept'], undefined);

  const next = await handshake(deviceHeaders());
  assert.equal(next.status, 101, 'a valid device connects after the rejection');
}

/** Signs an access token for the test device. `claims` and `header` override the valid defaults. */
async function mintToken(options: { claims?: JWTPayload; header?: Record<string, unknown>; key?: CryptoKey } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: JWTPayload = {
    iss: server.url,
    aud: `${server.url}/ws`,
    sub: deviceId,
    client_id: deviceId,
    jti: crypto.randomUUID(),
    scope: 'gateway',
    iat: now,
    exp: now + 300,
    ...options.claims,
  };
  const header = { alg: 'ES256', typ: 'at+jwt', kid: serverKey.kid, ...options.header };
  return new SignJWT(claims).setProtectedHeader(header).sign(options.key ?? serverKey.key);
}

function flipSignatureByte(jwt: string): string {
  const [header, payload, signature] = jwt.split('.');
  const bytes = Buffer.from(signature, 'base64url');
  bytes[10] ^= 0x01;
  return `${header}.${payload}.${bytes.toString('base64url')}`;
}

function replacePayload(jwt: string, claims: JWTPayload): string {
  const [header, payload, signature] = jwt.split('.');
  const changed = { ...JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')), ...claims };
  return `${header}.${Buffer.from(JSON.stringify(changed)).toString('base64url')}.${signature}`;
}

describe('transport check', () => {
  function transportState(options: { encrypted: boolean; peer: string; headers?: string[] }): HandshakeState {
    const request = {
      socket: { encrypted: options.encrypted, remoteAddress: options.peer },
      rawHeaders: options.headers ?? [],
      headers: {},
    } as unknown as IncomingMessage;
    return { request, url: new URL('https://gateway.invalid/ws'), peerAddress: options.peer, kind: null, token: null, scheme: null, offeredProtocols: [], verified: null };
  }

  const cases: Array<{ name: string; trusted: string[]; state: Parameters<typeof transportState>[0]; expected: ErrorCode | undefined }> = [
    { name: 'TLS socket passes', trusted: [], state: { encrypted: true, peer: '192.0.2.10' }, expected: undefined },
    { name: 'cleartext without proxy', trusted: [], state: { encrypted: false, peer: '127.0.0.1' }, expected: 'tls_required' },
    { name: 'forwarded https, no proxy configured', trusted: [], state: { encrypted: false, peer: '127.0.0.1', headers: ['X-Forwarded-Proto', 'https'] }, expected: 'tls_required' },
    { name: 'trusted proxy, forwarded https', trusted: ['127.0.0.1'], state: { encrypted: false, peer: '127.0.0.1', headers: ['X-Forwarded-Proto', 'https'] }, expected: undefined },
    { name: 'trusted proxy as IPv4-mapped IPv6', trusted: ['127.0.0.1'], state: { encrypted: false, peer: '::ffff:127.0.0.1', headers: ['X-Forwarded-Proto', 'https'] }, expected: undefined },
    { name: 'untrusted peer, forwarded https', trusted: ['127.0.0.1'], state: { encrypted: false, peer: '192.0.2.10', headers: ['X-Forwarded-Proto', 'https'] }, expected: 'tls_required' },
    { name: 'trusted proxy, two forwarded headers', trusted: ['127.0.0.1'], state: { encrypted: false, peer: '127.0.0.1', headers: ['X-Forwarded-Proto', 'https', 'X-Forwarded-Proto', 'https'] }, expected: 'tls_required' },
    { name: 'trusted proxy, forwarded http', trusted: ['127.0.0.1'], state: { encrypted: false, peer: '127.0.0.1', headers: ['X-Forwarded-Proto', 'http'] }, expected: 'tls_required' },
    { name: 'trusted proxy, no forwarded header', trusted: ['127.0.0.1'], state: { encrypted: false, peer: '127.0.0.1' }, expected: 'tls_required' },
  ];
  for (const { name, trusted, state, expected } of cases) {
    test(name, () => {
      assert.equal(transportCheck(trusted).run(transportState(state)), expected);
    });
  }

  test('tls_required sends 426 and JSON', () => {
    let written = '';
    const socket = new Duplex({
      read() {},
      write(chunk, _encoding, callback) {
        written += chunk.toString();
        callback();
      },
    });

    rejectUpgrade(socket, 'tls_required');

    assert.match(written, /^HTTP\/1\.1 426 /);
    assert.match(written, /\r\nX-Portcullis-Error: tls_required\r\n/);
    assert.doesNotMatch(written, /Sec-WebSocket-Accept/i);
    assert.equal(JSON.parse(written.slice(written.indexOf('\r\n\r\n') + 4)).error, 'tls_required');
    socket.destroy();
  });
});

test('check order is pinned', () => {
  const checks = buildHandshakeChecks({
    store: {} as Store,
    verifyToken: async () => { throw new Error('not called'); },
    builtInIssuer: true, gatewayClientId: 'portcullis-gateway',
    csrfKey: 'unused',
    allowedOrigins: [],
    trustedProxies: [],
    dpop: createDpopVerifier({ htu: 'https://gateway.invalid/ws', algorithms: ['ES256'], clockLeewaySeconds: 0, replayCache: new MemoryReplayCache() }),
  });

  assert.deepEqual(checks.map((check) => check.name), [
    'transport', 'websocket_request', 'token_in_url', 'credentials', 'subprotocol',
    'origin', 'access_token', 'dpop_proof', 'certificate_binding', 'csrf', 'client_id', 'revocation',
  ]);
});

describe('accepted handshakes', () => {
  test('device selects portcullis.v1 when offered', async () => {
    const response = await handshake({ ...deviceHeaders(), 'Sec-WebSocket-Protocol': 'portcullis.v1' });

    assert.equal(response.status, 101);
    assert.equal(response.headers['sec-websocket-protocol'], 'portcullis.v1');
  });

  test('device without an offer gets no subprotocol header', async () => {
    const response = await handshake(deviceHeaders());

    assert.equal(response.status, 101);
    assert.equal(response.headers['sec-websocket-protocol'], undefined);
  });

  test('browser never gets the CSRF offer', async () => {
    for (const offer of [`portcullis.v1, portcullis.csrf.${primary.csrfToken}`, `portcullis.csrf.${primary.csrfToken}, portcullis.v1`]) {
      const response = await handshake({ ...browserHeaders(primary), 'Sec-WebSocket-Protocol': offer });

      assert.equal(response.status, 101, offer);
      assert.equal(response.headers['sec-websocket-protocol'], 'portcullis.v1');
      assert.ok(!response.body.includes(primary.csrfToken));
    }
  });

  test('upper-case Origin host is accepted', async () => {
    const response = await handshake({ ...browserHeaders(primary), Origin: `https://LOCALHOST:${server.port}` });

    assert.equal(response.status, 101);
  });

  test('token expired within the leeway is accepted', async () => {
    // Tokens issued before the device was registered count as revoked, so `iat` cannot predate it.
    const device = await server.running.store.selectFrom('devices').select('created_at').where('client_id', '=', deviceId).executeTakeFirstOrThrow();
    const iat = Math.max(device.created_at, Math.floor(Date.now() / 1000) - 5);
    const token = await mintToken({ claims: { iat, exp: iat + 1 } });
    while (Math.floor(Date.now() / 1000) <= iat + 1) {
      await new Promise((resolve) => setTimeout(resolve, 250));
    }

    const response = await handshake(deviceHeaders(token));

    assert.equal(response.status, 101);
  });
});

describe('token in the URL', () => {
  const queries: Array<[string, () => string]> = [
    ['access_token', () => `access_token=${deviceAccessToken}`],
    ['token', () => `token=${deviceAccessToken}`],
    ['jwt', () => `jwt=${deviceAccessToken}`],
    ['auth', () => `auth=${deviceAccessToken}`],
    ['upper-case name', () => `ACCESS_TOKEN=${deviceAccessToken}`],
    ['any name holding a JWT', () => `x=${deviceAccessToken}`],
    ['a JWT as the name', () => `${deviceAccessToken}=1`],
  ];
  for (const [name, query] of queries) {
    test(name, async () => {
      const response = await handshake(deviceHeaders(), `/ws?${query()}`);

      await assertRejected(response, 400, 'token_in_url');
    });
  }

  test('the token never reaches the log', async () => {
    const signature = deviceAccessToken.split('.')[2];

    await handshake(deviceHeaders(), `/ws?x=${deviceAccessToken}`);
    await handshake(deviceHeaders(), `/ws/${deviceAccessToken}`);

    assert.deepEqual(server.logs.filter((line) => line.includes(signature)), []);
  });
});

describe('credentials', () => {
  test('cookie and Authorization together', async () => {
    const response = await handshake({ ...browserHeaders(primary), ...deviceHeaders() });

    await assertRejected(response, 400, 'ambiguous_credentials');
  });

  test('two Authorization headers', async () => {
    const response = await handshake({ 'X-Client-Id': deviceId, Authorization: [`Bearer ${deviceAccessToken}`, `Bearer ${deviceAccessToken}`] });

    await assertRejected(response, 400, 'ambiguous_credentials');
  });

  test('no credentials', async () => {
    const response = await handshake({});

    await assertRejected(response, 401, 'token_missing');
    assert.equal(response.headers['www-authenticate'], 'Bearer');
  });

  test('empty session cookie', async () => {
    const response = await handshake({ ...browserHeaders(primary), Cookie: '__Host-portcullis-session=' });

    await assertRejected(response, 401, 'token_missing');
  });
});

describe('invalid tokens', () => {
  const cases: Array<[string, () => Promise<string>]> = [
    ['malformed', async () => 'not-a-jwt'],
    ['two segments', async () => deviceAccessToken.split('.').slice(0, 2).join('.')],
    ['longer than 8 KiB', async () => replacePayload(deviceAccessToken, { pad: 'x'.repeat(9000) })],
    ['flipped signature byte', async () => flipSignatureByte(deviceAccessToken)],
    ['payload changed under the signature', async () => replacePayload(deviceAccessToken, { sub: 'someone-else' })],
    ['HS256 with the public key as secret', async () => new SignJWT({ ...decodePayload(deviceAccessToken) })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: serverKey.kid })
      .sign(new TextEncoder().encode(JSON.stringify(serverKey.publicJwk)))],
    ['alg none, empty signature', async () => new UnsecuredJWT({ ...decodePayload(deviceAccessToken) }).encode()],
    ['alg none, any signature', async () => {
      const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt', kid: serverKey.kid })).toString('base64url');
      return `${header}.${deviceAccessToken.split('.')[1]}.AAAA`;
    }],
    ['signed by another key', async () => mintToken({ key: (await generateKeyPair('ES256')).privateKey })],
    ['signed by another key without kid', async () => mintToken({ key: (await generateKeyPair('ES256')).privateKey, header: { kid: undefined } })],
    ['wrong issuer', async () => mintToken({ claims: { iss: 'https://issuer.invalid' } })],
    ['wrong audience', async () => mintToken({ claims: { aud: `${server.url}/other` } })],
    ['typ JWT', async () => mintToken({ header: { typ: 'JWT' } })],
    ['typ missing', async () => mintToken({ header: { typ: undefined } })],
    ['exp missing', async () => mintToken({ claims: { exp: undefined } })],
    ['client_id missing', async () => mintToken({ claims: { client_id: undefined } })],
    ['jti missing', async () => mintToken({ claims: { jti: undefined } })],
  ];

  test('correctly minted token is accepted', async () => {
    const response = await handshake(deviceHeaders(await mintToken()));

    assert.equal(response.status, 101, 'the variants below differ from an accepted token in one thing');
  });

  for (const [name, makeToken] of cases) {
    test(name, async () => {
      const response = await handshake(deviceHeaders(await makeToken()));

      await assertRejected(response, 401, 'token_invalid');
      assert.equal(response.headers['www-authenticate'], 'Bearer error="invalid_token"');
    });
  }

  test('session token as device Bearer', async () => {
    const response = await handshake({ Authorization: `Bearer ${primary.sessionToken}`, 'X-Client-Id': 'portcullis-gateway' });

    await assertRejected(response, 401, 'token_invalid');
  });

  test('device token in the session cookie', async () => {
    const response = await handshake({ ...browserHeaders(primary), Cookie: `__Host-portcullis-session=${deviceAccessToken}` });

    await assertRejected(response, 401, 'token_invalid');
  });

  test('expired beyond the leeway', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await mintToken({ claims: { iat: now - 720, exp: now - 120 } });

    const response = await handshake(deviceHeaders(token));

    await assertRejected(response, 401, 'token_expired');
  });
});

function decodePayload(jwt: string): JWTPayload {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

describe('browser origin', () => {
  const origins: Array<[string, (port: number) => string | null]> = [
    ['missing', () => null],
    ['null', () => 'null'],
    ['suffix of an attacker host', (port) => `https://localhost:${port}.attacker.test`],
    ['http scheme', (port) => `http://localhost:${port}`],
    ['IP instead of name', (port) => `https://127.0.0.1:${port}`],
    ['other port', (port) => `https://localhost:${port === 65535 ? port - 1 : port + 1}`],
    ['with a path', (port) => `https://localhost:${port}/`],
  ];
  for (const [name, origin] of origins) {
    test(name, async () => {
      const response = await handshake({ ...browserHeaders(primary), Origin: origin(server.port) });

      await assertRejected(response, 403, 'origin_not_allowed');
    });
  }

  test('two Origin headers', async () => {
    const response = await handshake({ ...browserHeaders(primary), Origin: [server.url, server.url] });

    await assertRejected(response, 403, 'origin_not_allowed');
  });
});

describe('browser CSRF', () => {
  const offers: Array<[string, () => string]> = [
    ['offer missing', () => 'portcullis.v1'],
    ['token of another session', () => `portcullis.v1, portcullis.csrf.${other.csrfToken}`],
    ['garbage token', () => 'portcullis.v1, portcullis.csrf.garbage'],
    ['empty token', () => 'portcullis.v1, portcullis.csrf.'],
    ['two offers', () => `portcullis.v1, portcullis.csrf.${primary.csrfToken}, portcullis.csrf.${primary.csrfToken}`],
  ];
  for (const [name, offer] of offers) {
    test(name, async () => {
      const response = await handshake({ ...browserHeaders(primary), 'Sec-WebSocket-Protocol': offer() });

      await assertRejected(response, 403, 'csrf_invalid');
    });
  }

  test('browser must offer portcullis.v1', async () => {
    const response = await handshake({ ...browserHeaders(primary), 'Sec-WebSocket-Protocol': `portcullis.csrf.${primary.csrfToken}` });

    await assertRejected(response, 400, 'subprotocol_required');
  });
});

describe('device client id', () => {
  const values: Array<[string, string | null]> = [
    ['missing', null],
    ['another device', 'other-device'],
    ['different case', deviceId.toUpperCase()],
  ];
  for (const [name, value] of values) {
    test(name, async () => {
      const response = await handshake({ ...deviceHeaders(), 'X-Client-Id': value });

      await assertRejected(response, 403, 'client_id_mismatch');
    });
  }
});

describe('revocation', () => {
  test('device removed after its token was issued', async () => {
    const token = await deviceToken(server, await addDevice(server, 'doomed-device'));
    const headers = { Authorization: `Bearer ${token}`, 'X-Client-Id': 'doomed-device' };
    assert.equal((await handshake(headers)).status, 101);

    const removal = await runCli(server.dataDir, ['devices', 'remove', 'doomed-device']);
    assert.equal(removal.code, 0, removal.stderr);

    await assertRejected(await handshake(headers), 403, 'token_revoked');
  });

  test('browser session after logout', async () => {
    const session = await scriptedLogin(server, 'gate-user', password);
    assert.equal((await handshake(browserHeaders(session))).status, 101);

    const logout = await server.fetch(`${server.url}/logout`, {
      method: 'POST',
      headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken },
    });
    assert.equal(logout.status, 200);

    await assertRejected(await handshake(browserHeaders(session)), 403, 'token_revoked');
  });
});

describe('malformed handshakes', () => {
  test('path other than /ws', async () => {
    for (const path of ['/websocket', '/ws/', '/WS']) {
      await assertRejected(await handshake(deviceHeaders(), path), 404, 'not_found');
    }
  });

  test('version 8', async () => {
    await assertRejected(await handshake({ ...deviceHeaders(), 'Sec-WebSocket-Version': '8' }), 400, 'bad_handshake');
  });

  const keys: Array<[string, string | string[] | null]> = [
    ['key missing', null],
    ['key not base64 of 16 bytes', 'abc'],
    ['key of 15 bytes', crypto.randomBytes(15).toString('base64')],
    ['two keys', [crypto.randomBytes(16).toString('base64'), crypto.randomBytes(16).toString('base64')]],
  ];
  for (const [name, key] of keys) {
    test(name, async () => {
      await assertRejected(await handshake({ ...deviceHeaders(), 'Sec-WebSocket-Key': key }), 400, 'bad_handshake');
    });
  }

  test('device offering only other subprotocols', async () => {
    await assertRejected(await handshake({ ...deviceHeaders(), 'Sec-WebSocket-Protocol': 'chat, mqtt' }), 400, 'subprotocol_required');
  });

  test('Upgrade h2c', async () => {
    const response = await handshake({ ...deviceHeaders(), Upgrade: 'h2c', Connection: 'Upgrade, HTTP2-Settings', 'HTTP2-Settings': 'AAMAAABkAARAAAAAAAIAAAAA' });

    await assertRejected(response, 426, 'upgrade_required');
  });

  test('plain GET on /ws', async () => {
    const response = await handshake({ ...deviceHeaders(), Upgrade: null, Connection: 'close' });

    assert.equal(response.status, 426);
    assert.match(response.headers['content-type'] ?? '', /^application\/json/);
    assert.equal(response.json?.error, 'upgrade_required');
    assert.equal(response.headers['x-portcullis-error'], 'upgrade_required');
    assert.equal(response.headers.upgrade, 'websocket');
    assert.equal((await handshake(deviceHeaders())).status, 101);
  });
});
