// A gateway started with --role gateway --issuer trusts a second, independent issuer (an
// oidc-provider instance with its own RSA keys and CA) through its discovery metadata and JWKS.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { base64url, importJWK, SignJWT, type JWK } from 'jose';
import pino from 'pino';

import { sessionCookieName } from '../../src/gateway/handshake.ts';
import { remoteIssuerKeys } from '../../src/gateway/issuer-keys.ts';
import { createTokenVerifier } from '../../src/gateway/token-verifier.ts';
import { readiness } from '../support/cluster.ts';
import { rawHandshake, upgradeHeaders } from '../support/raw-handshake.ts';
import { generateRsaJwk, startSecondIssuer, type IssuerClient, type SecondIssuer } from '../support/second-issuer.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { deviceRoundTrip, openDeviceSocket, probeDeviceConnection } from '../support/websocket.ts';

const audience = 'urn:portcullis:test-gateway';
const otherAudience = 'urn:someone-else:api';
const sensor: IssuerClient = {
  client_id: 'sensor-7',
  client_secret: crypto.randomBytes(24).toString('base64url'),
  scope: 'publish:devices/sensor-7/# subscribe:devices/sensor-7/commands',
};

let issuer: SecondIssuer;
let gateway: TestServer;

before(async () => {
  issuer = await startSecondIssuer([sensor], [audience, otherAudience]);
  gateway = await startTestServer({ role: 'gateway', issuer: issuer.url, audience, issuerCaFile: issuer.caFile });
});

after(async () => {
  await gateway?.close();
  await issuer?.stop();
});

/** Signs `claims` with `key` the way an issuer would, with full control over the header. */
async function signWith(key: JWK, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ client_id: sensor.client_id, scope: sensor.scope, jti: crypto.randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: key.kid, ...header })
    .setIssuer(issuer.url).setAudience(audience).setSubject(sensor.client_id)
    .setIssuedAt(now).setExpirationTime(now + 300)
    .sign(await importJWK(key, 'RS256'));
}

async function connect(token: string) {
  return probeDeviceConnection(gateway.port, gateway.caPem, sensor.client_id, token);
}

describe('tokens of the second issuer', () => {
  test('a device with a token from the second issuer connects and uses its channels', async () => {
    const token = await issuer.token(sensor, audience);

    const socket = await openDeviceSocket(gateway, { clientId: sensor.client_id, accessToken: token });
    try {
      assert.equal(socket.welcome.client_id, sensor.client_id);
      assert.equal(socket.welcome.scope, sensor.scope);
      const message = await deviceRoundTrip(socket, { reading: 21.5 });
      assert.deepEqual(message.data, { reading: 21.5 });
    } finally {
      socket.close();
    }
  });

  test('a token for another audience is refused', async () => {
    const outcome = await connect(await issuer.token(sensor, otherAudience));

    assert.deepEqual([outcome.status, outcome.error], [401, 'token_invalid']);
  });

  test('a token signed by a key the issuer never published is refused', async () => {
    const stranger = await generateRsaJwk(issuer.keys[0].kid!);

    const outcome = await connect(await signWith(stranger, {}));

    assert.deepEqual([outcome.status, outcome.error], [401, 'token_invalid']);
  });

  test('alg none and HS256 keyed with the public key are refused', async () => {
    const claims = base64url.encode(JSON.stringify({
      iss: issuer.url, aud: audience, sub: sensor.client_id, client_id: sensor.client_id, jti: crypto.randomUUID(),
      iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 300,
    }));
    const unsigned = `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'at+jwt' }))}.${claims}.`;
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = issuer.keys[0];
    const hmacHeader = base64url.encode(JSON.stringify({ alg: 'HS256', typ: 'at+jwt', kid: publicJwk.kid }));
    const hmacSignature = crypto.createHmac('sha256', JSON.stringify(publicJwk)).update(`${hmacHeader}.${claims}`).digest('base64url');

    for (const token of [unsigned, `${hmacHeader}.${claims}.${hmacSignature}`]) {
      const outcome = await connect(token);
      assert.deepEqual([outcome.status, outcome.error], [401, 'token_invalid'], token.split('.')[0]);
    }
  });

  test('typ JWT is refused unless accepted by configuration', async () => {
    const outcome = await connect(await signWith(issuer.keys[0], {}, { typ: 'JWT' }));

    assert.deepEqual([outcome.status, outcome.error], [401, 'token_invalid']);
  });

  test('a browser session cookie is refused: sessions need the built-in auth server', async () => {
    const token = await issuer.token(sensor, audience);

    const response = await rawHandshake({
      port: gateway.port,
      ca: gateway.caPem,
      path: '/ws',
      headers: { ...upgradeHeaders(gateway.port), Origin: gateway.url, Cookie: `${sessionCookieName}=${token}`, 'Sec-WebSocket-Protocol': 'portcullis.v1, portcullis.csrf.x' },
    });

    assert.equal(response.status, 401);
    assert.equal(response.json?.error, 'token_invalid');
  });

  test('the gateway role serves no auth server and no login', async () => {
    for (const path of ['/.well-known/oauth-authorization-server', '/oauth/token', '/login', '/']) {
      const response = await gateway.fetch(`${gateway.url}${path}`);
      assert.equal(response.status, 404, path);
    }
    assert.equal((await readiness(gateway)).status, 200);
  });
});

describe('issuer keys', () => {
  const logger = pino({ level: 'silent' });

  test('a new key is fetched on an unknown kid, once the cooldown has passed', async () => {
    const keys = remoteIssuerKeys({ issuer: issuer.url, jwksUrl: null, caFile: issuer.caFile, logger, cooldownMs: 300 });
    const verify = createTokenVerifier({
      issuer: issuer.url, audience, getKey: keys.getKey, algorithms: ['RS256'], acceptJwtType: true,
      clientIdClaim: 'client_id', scopeClaim: 'scope', clockLeewaySeconds: 0,
    });
    assert.equal((await verify(await issuer.token(sensor, audience))).clientId, sensor.client_id);

    const next = await generateRsaJwk('second-issuer-2');
    await issuer.rotate([next, ...issuer.keys]);
    const tokenOfNewKey = await issuer.token(sensor, audience);

    // Within the cooldown the cached set is used, so the new kid is unknown; after it, a refetch finds it.
    const deadline = Date.now() + 10_000;
    let verified = await verify(tokenOfNewKey).catch((error) => error);
    while (verified instanceof Error && Date.now() < deadline) {
      assert.equal((verified as { code?: string }).code, 'token_invalid');
      await new Promise((resolve) => setTimeout(resolve, 100));
      verified = await verify(tokenOfNewKey).catch((error) => error);
    }
    assert.equal(verified.clientId, sensor.client_id);
    assert.equal(verified.payload.iss, issuer.url);
  });

  test('typ JWT, an azp client id and an array of scopes are read when configured', async () => {
    const keys = remoteIssuerKeys({ issuer: issuer.url, jwksUrl: `${issuer.url}/jwks`, caFile: issuer.caFile, logger });
    const verify = createTokenVerifier({
      issuer: issuer.url, audience, getKey: keys.getKey, algorithms: ['RS256'], acceptJwtType: true,
      clientIdClaim: 'azp', scopeClaim: 'roles', clockLeewaySeconds: 0,
    });

    const token = await signWith(issuer.keys[0], { client_id: undefined, azp: 'kiosk-2', roles: ['subscribe:devices/kiosk-2/#', 'not a scope', 7] }, { typ: 'JWT' });
    const verified = await verify(token);

    assert.equal(verified.clientId, 'kiosk-2');
    assert.equal(verified.scope, 'subscribe:devices/kiosk-2/#');
  });
});

describe('issuer unreachable', () => {
  let isolated: TestServer;

  after(async () => {
    await isolated?.close();
    await issuer.start().catch(() => undefined);
  });

  test('handshakes answer 503 and /readyz names the JWKS until the issuer returns', async () => {
    const token = await issuer.token(sensor, audience);
    await issuer.stop();
    // A fresh gateway has no cached keys, so it must reach the issuer to check any token.
    isolated = await startTestServer({ role: 'gateway', issuer: issuer.url, audience, issuerCaFile: issuer.caFile });

    const refused = await probeDeviceConnection(isolated.port, isolated.caPem, sensor.client_id, token);
    assert.deepEqual([refused.status, refused.error], [503, 'temporarily_unavailable']);
    const degraded = await readiness(isolated);
    assert.equal(degraded.status, 503);
    assert.deepEqual(degraded.body, { status: 'degraded', unavailable: ['jwks'] });

    await issuer.start();
    const deadline = Date.now() + 20_000;
    let outcome = refused;
    while (outcome.status !== 101 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      outcome = await probeDeviceConnection(isolated.port, isolated.caPem, sensor.client_id, token);
    }
    assert.equal(outcome.status, 101);
    assert.equal(outcome.welcome?.client_id, sensor.client_id);
  });
});
