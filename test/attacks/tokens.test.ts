// Token attacks on the handshake: forged JOSE headers and signatures, validly signed tokens with one
// bad claim, tokens of the wrong kind, and tokens bound to another or a removed device. Every case
// runs on the device path (Authorization: Bearer + X-Client-Id) and, where a cookie can carry the
// token, on the browser path (session cookie + allowed Origin + CSRF offer).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  CompactSign, createLocalJWKSet, decodeJwt, exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT,
  type CryptoKey, type JWK, type JWTPayload,
} from 'jose';

import type { ErrorCode } from '../../src/errors.ts';
import { loadTlsMaterial } from '../../src/tls/dev-ca.ts';
import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { rememberSecret } from '../support/capture.ts';
import { approveDevice, gatewayClientId, gatewayCodeFlow, redeemRefreshToken } from '../support/oauth-flows.ts';
import { rawHandshake, type RawResponse } from '../support/raw-handshake.ts';
import { addDevice, addUser, deviceToken, runServerCli, startTestServer, type TestServer } from '../support/server.ts';

type Path = 'device' | 'browser';

const paths: readonly Path[] = ['device', 'browser'];
const deviceId = 'token-attack-device';
const username = 'token-attack-user';
const password = 'token attacks use a long enough password';
// Generous, because the machine is shared with other suites. No test asserts a duration.
const testOptions = { timeout: 120_000 };

/** A running server with its signing key, a device and a browser session, which the attacks need. */
interface Target {
  server: TestServer;
  signingKey: CryptoKey;
  kid: string;
  deviceAccessToken: string;
  session: ScriptedSession;
  /** Claims of the session token, the template for minted browser tokens. */
  sessionClaims: JWTPayload;
}

let target: Target;
let publishedJwk: JWK;
let attackerKey: { privateKey: CryptoKey; publicJwk: JWK };

async function prepareTarget(server: TestServer): Promise<Target> {
  const row = await server.running.store.selectFrom('signing_keys').selectAll().where('status', '=', 'active').executeTakeFirstOrThrow();
  const privateJwk = JSON.parse(row.private_jwk) as JWK;
  rememberSecret(privateJwk.d);

  const deviceAccessToken = await deviceToken(server, await addDevice(server, deviceId));
  await addUser(server, username, password);
  const session = await scriptedLogin(server, username, password);
  return {
    server,
    signingKey: await importJWK(privateJwk, 'ES256') as CryptoKey,
    kid: row.kid,
    deviceAccessToken,
    session,
    sessionClaims: decodeJwt(session.sessionToken),
  };
}

before(async () => {
  target = await prepareTarget(await startTestServer());

  // An attacker knows only the public key set that the server publishes, and nothing more.
  const jwks = await (await target.server.fetch(`${target.server.url}/oauth/jwks`)).json() as { keys: JWK[] };
  publishedJwk = jwks.keys.find((key) => key.kid === target.kid)!;
  assert.ok(publishedJwk, 'the published key set does not contain the active signing key');

  const pair = await generateKeyPair('ES256');
  attackerKey = { privateKey: pair.privateKey, publicJwk: { ...await exportJWK(pair.publicKey), kid: 'attacker-key', alg: 'ES256' } };
});

after(async () => {
  await target.server.close();
});

/** Returns the handshake headers that present `token` on `path`, with every other check satisfied. */
function headersFor(path: Path, token: string, on: Target = target): Record<string, string> {
  rememberSecret(token);
  if (path === 'device') {
    return { Authorization: `Bearer ${token}`, 'X-Client-Id': deviceId };
  }
  return {
    Cookie: `__Host-portcullis-session=${token}`,
    Origin: on.server.url,
    'Sec-WebSocket-Protocol': `portcullis.v1, portcullis.csrf.${on.session.csrfToken}`,
  };
}

function handshake(headers: Record<string, string>, on: Target = target): Promise<RawResponse> {
  return rawHandshake({ port: on.server.port, ca: on.server.caPem, headers });
}

function present(path: Path, token: string, on: Target = target): Promise<RawResponse> {
  return handshake(headersFor(path, token, on), on);
}

/** Returns the claims of a token that `on` accepts on `path`, with a fresh `jti`, `iat` and `exp`. */
function validClaims(path: Path, on: Target = target): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  const fresh = { jti: crypto.randomUUID(), iat: now, exp: now + 300 };
  if (path === 'browser') {
    return { ...on.sessionClaims, ...fresh };
  }
  return { iss: on.server.url, aud: `${on.server.url}/ws`, sub: deviceId, client_id: deviceId, scope: 'gateway', ...fresh };
}

/** Signs a token for `path` with the server's own key. `claims` and `header` override the valid defaults. */
function mint(path: Path, options: { claims?: JWTPayload; header?: Record<string, unknown>; on?: Target } = {}): Promise<string> {
  const on = options.on ?? target;
  const header = { alg: 'ES256', typ: 'at+jwt', kid: on.kid, ...options.header };
  return new SignJWT({ ...validClaims(path, on), ...options.claims }).setProtectedHeader(header).sign(on.signingKey);
}

function encodeSegment(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function signHmac(header: Record<string, unknown>, claims: JWTPayload, secret: string | Buffer): string {
  const signingInput = `${encodeSegment({ alg: 'HS256', typ: 'at+jwt', ...header })}.${encodeSegment(claims)}`;
  return `${signingInput}.${crypto.createHmac('sha256', secret).update(signingInput).digest('base64url')}`;
}

function signAsAttacker(path: Path, header: Record<string, unknown>): Promise<string> {
  return new SignJWT(validClaims(path)).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', ...header }).sign(attackerKey.privateKey);
}

/**
 * Asserts that the handshake was rejected with `status` and `code` in the body and the
 * `X-Portcullis-Error` header, without an upgrade, and that a valid client on the same path still
 * connects afterwards.
 */
async function assertRejected(response: RawResponse, expected: { status: number; code: ErrorCode; attack: string; path: Path; on?: Target }): Promise<void> {
  const { status, code, attack, path } = expected;
  const on = expected.on ?? target;
  assert.equal(response.status, status, `${attack} on the ${path} path was not rejected with ${status}`);
  assert.equal(response.json?.error, code, `${attack} on the ${path} path got another error code in the body`);
  assert.equal(response.headers['x-portcullis-error'], code, `${attack} on the ${path} path got another X-Portcullis-Error`);
  assert.equal(response.headers['sec-websocket-accept'], undefined, `${attack} on the ${path} path was upgraded`);
  if (status === 401) {
    assert.equal(response.headers['www-authenticate'], 'Bearer error="invalid_token"', `${attack} on the ${path} path lacks the RFC 6750 challenge`);
  }

  const validToken = path === 'device' ? on.deviceAccessToken : on.session.sessionToken;
  const next = await present(path, validToken, on);
  assert.equal(next.status, 101, `a valid ${path} client no longer connects after ${attack}`);
}

describe('forged signatures and headers', () => {
  test('attack 6: minted control token is accepted', testOptions, async () => {
    for (const path of paths) {
      const response = await present(path, await mint(path));

      assert.equal(response.status, 101, `a token minted like the forgeries is rejected on the ${path} path, so the forgery tests prove nothing`);
    }
  });

  const forgeries: Array<{ name: string; forge: (path: Path) => Promise<string> | string; keysIntact?: boolean }> = [
    {
      name: 'alg none with an empty signature',
      forge: (path) => `${encodeSegment({ alg: 'none', typ: 'at+jwt', kid: target.kid })}.${encodeSegment(validClaims(path))}.`,
    },
    {
      name: 'HS256 signed with the published JWK',
      forge: (path) => signHmac({ kid: target.kid }, validClaims(path), JSON.stringify(publishedJwk)),
    },
    {
      name: 'HS256 signed with the public key PEM',
      forge: (path) => {
        const pem = crypto.createPublicKey({ key: publishedJwk as crypto.JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
        return signHmac({ kid: target.kid }, validClaims(path), pem.toString());
      },
    },
    {
      name: 'embedded jwk header',
      forge: (path) => signAsAttacker(path, { jwk: attackerKey.publicJwk }),
    },
    {
      // Reading /dev/null as the key file would yield an empty HMAC secret.
      name: 'kid of ../../../../dev/null',
      forge: (path) => signHmac({ kid: '../../../../dev/null' }, validClaims(path), Buffer.alloc(0)),
    },
    {
      // A kid spliced into SQL would make the server use the secret the attacker selected.
      name: 'kid with SQL quotes',
      forge: (path) => signHmac({ kid: "x' UNION SELECT 'attacker-secret' --" }, validClaims(path), 'attacker-secret'),
      keysIntact: true,
    },
    {
      name: 'kid with a SQL statement',
      forge: (path) => signAsAttacker(path, { kid: "'; DROP TABLE signing_keys; --" }),
      keysIntact: true,
    },
    {
      // RFC 7515 section 4.1.11: a recipient that does not understand a crit name must reject the token.
      name: 'crit header with an unknown name',
      forge: (path) => new SignJWT(validClaims(path))
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: target.kid, crit: ['urn:example:unknown'], 'urn:example:unknown': true })
        .sign(target.signingKey, { crit: { 'urn:example:unknown': true } }),
    },
    {
      name: 'payload that is not JSON',
      forge: () => new CompactSign(new TextEncoder().encode('{"sub": not json'))
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: target.kid })
        .sign(target.signingKey),
    },
    {
      name: 'payload that is a JSON array',
      forge: (path) => new CompactSign(new TextEncoder().encode(JSON.stringify([validClaims(path)])))
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: target.kid })
        .sign(target.signingKey),
    },
    {
      name: 'key never issued, with the server kid',
      forge: (path) => signAsAttacker(path, { kid: target.kid }),
    },
    {
      name: 'key never issued, with its own kid',
      forge: (path) => signAsAttacker(path, { kid: attackerKey.publicJwk.kid }),
    },
    {
      name: 'key never issued, without kid',
      forge: (path) => signAsAttacker(path, {}),
    },
  ];

  for (const { name, forge, keysIntact } of forgeries) {
    test(`attack 6: ${name}`, testOptions, async () => {
      for (const path of paths) {
        const response = await present(path, await forge(path));

        await assertRejected(response, { status: 401, code: 'token_invalid', attack: name, path });
      }

      if (keysIntact) {
        const keys = await target.server.running.store.selectFrom('signing_keys').select('kid').execute();
        assert.ok(keys.some((key) => key.kid === target.kid), `${name} changed the signing_keys table`);
      }
    });
  }
});

/** A loopback listener that counts every TCP connection it accepts and serves the attacker's key set. */
interface Lure {
  url: string;
  connections: number;
  close(): Promise<void>;
}

async function startLure(scheme: 'http' | 'https', jwks: string): Promise<Lure> {
  const respond = (_request: http.IncomingMessage, response: http.ServerResponse) => {
    response.writeHead(200, { 'content-type': 'application/json' }).end(jwks);
  };
  // The lure counts TCP connections before any TLS handshake, so any certificate works. This one is the server's own.
  const tls = await loadTlsMaterial({ dataDir: target.server.dataDir, certFile: null, keyFile: null });
  const listener = scheme === 'https' ? https.createServer({ cert: tls.cert, key: tls.key }, respond) : http.createServer(respond);

  const lure = { url: '', connections: 0, close: () => new Promise<void>((resolve) => { listener.closeAllConnections(); listener.close(() => resolve()); }) };
  listener.on('connection', () => { lure.connections += 1; });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  lure.url = `${scheme}://127.0.0.1:${(listener.address() as AddressInfo).port}/jwks.json`;
  return lure;
}

describe('key URLs in the header', () => {
  test('attack 6: jku and x5u headers pointing at loopback', testOptions, async () => {
    const jwks = JSON.stringify({ keys: [attackerKey.publicJwk] });
    const lures = { https: await startLure('https', jwks), http: await startLure('http', jwks) };

    try {
      for (const scheme of ['https', 'http'] as const) {
        for (const parameter of ['jku', 'x5u']) {
          for (const path of paths) {
            const token = await signAsAttacker(path, { kid: attackerKey.publicJwk.kid, [parameter]: lures[scheme].url });

            const response = await present(path, token);

            const attack = `${parameter} pointing at an ${scheme} listener`;
            await assertRejected(response, { status: 401, code: 'token_invalid', attack, path });
            assert.equal(lures[scheme].connections, 0, `${attack} on the ${path} path made the server connect to the URL`);
          }
        }
      }

      // The counters must be able to see a connection, or the zero above proves nothing.
      const probe = await fetch(lures.http.url);
      await probe.body?.cancel();
      assert.equal(lures.http.connections, 1, 'the listener did not count a connection it accepted');
    } finally {
      await lures.https.close();
      await lures.http.close();
    }
  });
});

describe('token of 100 KB', () => {
  const tokenBytes = 100 * 1024;

  function mintLarge(path: Path, on: Target): Promise<string> {
    // Base64url makes the claim about 4/3 as long, so the whole token exceeds 100 KB.
    return mint(path, { claims: { pad: 'x'.repeat(Math.ceil(tokenBytes * 3 / 4)) }, on });
  }

  test('attack 6: 100 KB token meets the header size limit', testOptions, async () => {
    for (const path of paths) {
      const token = await mintLarge(path, target);
      assert.ok(token.length > tokenBytes, 'the test token is not larger than 100 KB');

      const response = await present(path, token);

      // Node's HTTP parser rejects the request before any handshake check runs.
      assert.equal(response.status, 431, `a 100 KB token on the ${path} path passed the default header size limit`);
      assert.equal(response.json?.error, 'headers_too_large', `a 100 KB token on the ${path} path got another error code`);
      assert.equal(response.headers['sec-websocket-accept'], undefined, `a 100 KB token on the ${path} path was upgraded`);
      const next = await present(path, path === 'device' ? target.deviceAccessToken : target.session.sessionToken);
      assert.equal(next.status, 101, `a valid ${path} client no longer connects after a 100 KB token`);
    }
  });

  test('attack 6: 100 KB token under a raised header limit', testOptions, async () => {
    const roomy = await prepareTarget(await startTestServer({ maxHeaderBytes: 4 * tokenBytes }));

    try {
      for (const path of paths) {
        const token = await mintLarge(path, roomy);

        const response = await present(path, token, roomy);

        await assertRejected(response, { status: 401, code: 'token_invalid', attack: 'a validly signed 100 KB token', path, on: roomy });
      }
    } finally {
      await roomy.server.close();
    }
  });
});

describe('validly signed tokens with one bad claim', () => {
  const leeway = () => target.server.options.clockLeewaySeconds;
  const now = () => Math.floor(Date.now() / 1000);

  const claimCases: Array<{ name: string; code: ErrorCode; change: () => { claims?: JWTPayload; header?: Record<string, unknown> } }> = [
    { name: 'exp in the past beyond the leeway', code: 'token_expired', change: () => ({ claims: { iat: now() - 600, exp: now() - leeway() - 60 } }) },
    { name: 'nbf in the future beyond the leeway', code: 'token_invalid', change: () => ({ claims: { nbf: now() + leeway() + 60 } }) },
    { name: 'wrong aud', code: 'token_invalid', change: () => ({ claims: { aud: `${target.server.url}/api` } }) },
    { name: 'aud of the gateway client', code: 'token_invalid', change: () => ({ claims: { aud: gatewayClientId } }) },
    // The same server under another spelling of its URL is still another issuer.
    { name: 'wrong iss', code: 'token_invalid', change: () => ({ claims: { iss: `https://127.0.0.1:${target.server.port}` } }) },
    { name: 'iss with a trailing slash', code: 'token_invalid', change: () => ({ claims: { iss: `${target.server.url}/` } }) },
    { name: 'typ JWT instead of at+jwt', code: 'token_invalid', change: () => ({ header: { typ: 'JWT' } }) },
  ];

  for (const { name, code, change } of claimCases) {
    test(`attack 7: ${name}`, testOptions, async () => {
      for (const path of paths) {
        const response = await present(path, await mint(path, change()));

        await assertRejected(response, { status: 401, code, attack: name, path });
      }
    });
  }
});

describe('tokens of the wrong kind', () => {
  let issued: Awaited<ReturnType<typeof gatewayCodeFlow>>;

  before(async () => {
    issued = await gatewayCodeFlow(target.server, username, password);
  });

  test('attack 7: refresh token as an access token', testOptions, async () => {
    const flowDevice = 'token-attack-flow-device';
    const deviceFlow = await approveDevice(target.server, await addDevice(target.server, flowDevice), username);
    const attempts: Array<{ path: Path; holder: string; headers: Record<string, string> }> = [
      { path: 'device', holder: 'device', headers: { Authorization: `Bearer ${deviceFlow.refreshToken}`, 'X-Client-Id': flowDevice } },
      { path: 'device', holder: 'gateway', headers: { Authorization: `Bearer ${issued.refreshToken}`, 'X-Client-Id': gatewayClientId } },
      { path: 'browser', holder: 'gateway', headers: headersFor('browser', issued.refreshToken) },
    ];

    for (const { path, holder, headers } of attempts) {
      const response = await handshake(headers);

      await assertRejected(response, { status: 401, code: 'token_invalid', attack: `the ${holder}'s refresh token`, path });
    }

    // Redeemed only now, because rotation retires a refresh token. Both were live when the gateway rejected them.
    for (const [holder, grant] of [['device', deviceFlow], ['gateway', issued]] as const) {
      const redemption = await redeemRefreshToken(target.server, grant.client, grant.refreshToken);

      assert.equal(redemption.status, 200, `the ${holder}'s refresh token was not live, so its rejection proves nothing`);
    }
  });

  test('attack 7: ID token as an access token', testOptions, async () => {
    // The server's own key signed it for this user, so only its kind sets it apart from an access token.
    const jwks = createLocalJWKSet({ keys: [publishedJwk] });
    const verified = await jwtVerify(issued.idToken, jwks, { issuer: target.server.url, audience: gatewayClientId });
    assert.equal(verified.payload.sub, username, 'the ID token was not issued for the test user');

    const attempts: Array<{ path: Path; headers: Record<string, string> }> = [
      { path: 'device', headers: { Authorization: `Bearer ${issued.idToken}`, 'X-Client-Id': gatewayClientId } },
      { path: 'device', headers: { Authorization: `Bearer ${issued.idToken}`, 'X-Client-Id': deviceId } },
      { path: 'browser', headers: headersFor('browser', issued.idToken) },
    ];
    for (const { path, headers } of attempts) {
      const response = await handshake(headers);

      await assertRejected(response, { status: 401, code: 'token_invalid', attack: 'an ID token', path });
    }
  });
});

describe('tokens bound to another device', () => {
  test('attack 8: client_id differs from X-Client-Id', testOptions, async () => {
    const otherId = 'token-attack-other-device';
    const otherToken = await deviceToken(target.server, await addDevice(target.server, otherId));
    rememberSecret(otherToken);
    assert.equal((await handshake({ Authorization: `Bearer ${otherToken}`, 'X-Client-Id': otherId })).status, 101, 'the other device cannot connect with its own id');

    const response = await handshake({ Authorization: `Bearer ${otherToken}`, 'X-Client-Id': deviceId });

    await assertRejected(response, { status: 403, code: 'client_id_mismatch', attack: 'a token presented under another client id', path: 'device' });
  });

  test('attack 8: valid token of a removed device', testOptions, async () => {
    const removedId = 'token-attack-removed-device';
    const token = await deviceToken(target.server, await addDevice(target.server, removedId));
    rememberSecret(token);
    const headers = { Authorization: `Bearer ${token}`, 'X-Client-Id': removedId };
    assert.equal((await handshake(headers)).status, 101, 'the device cannot connect before its removal');

    const removal = await runServerCli(target.server, ['devices', 'remove', removedId]);
    assert.equal(removal.code, 0, removal.stderr);

    await assertRejected(await handshake(headers), { status: 403, code: 'token_revoked', attack: 'the token of a removed device', path: 'device' });

    // `iat` and the registration time are whole seconds, so a new registration in the token's own
    // second would not tell the two apart.
    const issuedAt = decodeJwt(token).iat!;
    while (Math.floor(Date.now() / 1000) <= issuedAt) {
      await sleep(200);
    }
    const again = await deviceToken(target.server, await addDevice(target.server, removedId));
    rememberSecret(again);

    await assertRejected(await handshake(headers), { status: 403, code: 'token_revoked', attack: 'the token of a device removed and registered again', path: 'device' });
    assert.equal((await handshake({ ...headers, Authorization: `Bearer ${again}` })).status, 101, 'the registered-again device cannot connect with a new token');
  });
});
