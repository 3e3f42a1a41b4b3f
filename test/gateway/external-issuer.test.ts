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
import { runServerCli, startTestServer, type TestServer } from '../support/server.ts';
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
    .setIssuer(issuer.url).setAudience(audience).setSubject(typeof claims.sub === 'string' ? claims.sub : sensor.client_id)
    .setIssuedAt(now).setExpirationTime(now + 300)
    .sign(await importJWK(key, 'RS256'));
}

async function connect(token: string) {
  return probeDeviceConnection(gateway.port, gateway.caPem, sensor.client_id, token);
}

describe('tokens of the second issuer', () => {
  test('device token connects and round-trips', async () => {
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

  test('publish API accepts issuer token', async () => {
    const response = await gateway.fetch(`${gateway.url}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await issuer.token(sensor, audience)}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'devices/sensor-7/telemetry', data: { reading: 3 } }),
    });

    assert.equal(response.status, 202);
  });

  test('revoke closes only jti with space', async () => {
    const target = await openDeviceSocket(gateway, { clientId: sensor.client_id, accessToken: await signWith(issuer.keys[0], { jti: 'victim 42' }) });
    const bystander = await openDeviceSocket(gateway, { clientId: 'kiosk-9', accessToken: await signWith(issuer.keys[0], { jti: '42', client_id: 'kiosk-9', sub: 'kiosk-9' }) });
    try {
      const listed = await runServerCli(gateway, ['sessions', 'list', '--json']);
      const connection = (JSON.parse(listed.stdout) as Array<{ id: string; jti: string }>).find((candidate) => candidate.jti === 'victim 42');
      assert.ok(connection, listed.stdout);

      const revoked = await runServerCli(gateway, ['sessions', 'revoke', connection.id]);
      assert.equal(revoked.code, 0, revoked.stderr);

      assert.equal((await target.waitForClose()).code, 4403);
      assert.equal(bystander.isOpen, true);
      const again = await connect(await signWith(issuer.keys[0], { jti: 'victim 42' }));
      assert.deepEqual([again.status, again.error], [403, 'token_revoked']);
    } finally {
      target.close();
      bystander.close();
    }
  });

  test('other audience rejected', async () => {
    const outcome = await connect(await issuer.token(sensor, otherAudience));

    assert.deepEqual([outcome.status, outcome.error], [401, 'token_invalid']);
  });

  test('unpublished signing key rejected', async () => {
    const stranger = await generateRsaJwk(issuer.keys[0].kid!);

    const outcome = await connect(await signWith(stranger, {}));

    assert.deepEqual([outcome.status, outcome.error], [401, 'token_invalid']);
  });

  test('alg none and HS256 rejected', async () => {
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

  test('typ JWT rejected by default', async () => {
    const outcome = await connect(await signWith(issuer.keys[0], {}, { typ: 'JWT' }));

    assert.deepEqual([outcome.status, outcome.error], [401, 'token_invalid']);
  });

  test('session cookie rejected', async () => {
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

  test('gateway role serves no auth routes', async () => {
    for (const path of ['/.well-known/oauth-authorization-server', '/oauth/token', '/login', '/']) {
      const response = await gateway.fetch(`${gateway.url}${path}`);
      assert.equal(response.status, 404, path);
    }
    assert.equal((await readiness(gateway)).status, 200);
  });
});

describe('issuer keys', () => {
  const logger = pino({ level: 'silent' });

  test('unknown kid refetched after cooldown', async () => {
    const keys = remoteIssuerKeys({ issuer: issuer.url, jwksUrl: null, caFile: issuer.caFile, logger, cooldownMs: 300 });
    const verify = createTokenVerifier({
      issuer: issuer.url, audience, getKey: keys.getKey, algorithms: ['RS256'], acceptJwtType: true,
      clientIdClaim: 'client_id', scopeClaim: 'scope', tokenIdClaim: 'jti', clockLeewaySeconds: 0,
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

  test('configured claims and typ JWT read', async () => {
    const keys = remoteIssuerKeys({ issuer: issuer.url, jwksUrl: `${issuer.url}/jwks`, caFile: issuer.caFile, logger });
    const verify = createTokenVerifier({
      issuer: issuer.url, audience, getKey: keys.getKey, algorithms: ['RS256'], acceptJwtType: true,
      clientIdClaim: 'azp', scopeClaim: 'roles', tokenIdClaim: 'uti', clockLeewaySeconds: 0,
    });

    const token = await signWith(issuer.keys[0], { client_id: undefined, jti: undefined, uti: 'aBc-123', azp: 'kiosk-2', roles: ['subscribe:devices/kiosk-2/#', 'not a scope', 7] }, { typ: 'JWT' });
    const verified = await verify(token);

    assert.equal(verified.clientId, 'kiosk-2');
    assert.equal(verified.jti, 'aBc-123');
    assert.equal(verified.scope, 'subscribe:devices/kiosk-2/#');
    const withoutId = await signWith(issuer.keys[0], { jti: undefined, azp: 'kiosk-2' }, { typ: 'JWT' });
    await assert.rejects(verify(withoutId), { code: 'token_invalid' });
  });

  test('failing JWKS not refetched per token', async () => {
    const keys = remoteIssuerKeys({ issuer: issuer.url, jwksUrl: `${issuer.url}/jwks`, caFile: issuer.caFile, logger });
    const verify = createTokenVerifier({
      issuer: issuer.url, audience, getKey: keys.getKey, algorithms: ['RS256'], acceptJwtType: false,
      clientIdClaim: 'client_id', scopeClaim: 'scope', tokenIdClaim: 'jti', clockLeewaySeconds: 0,
    });
    // One key under 20 unknown kids: generating 20 RSA keys inside the loop could outlast the
    // back-off on a loaded machine.
    const forgingKey = await generateRsaJwk('forged');
    const before = issuer.jwksRequests;
    issuer.failJwks = true;
    try {
      for (let index = 0; index < 20; index += 1) {
        const forged = await signWith({ ...forgingKey, kid: `forged-${index}` }, {});
        await assert.rejects(verify(forged), { code: 'temporarily_unavailable' });
      }
    } finally {
      issuer.failJwks = false;
    }

    // One fetch fails and starts the back-off; a second could only come if the loop outlasted it.
    assert.ok(issuer.jwksRequests - before <= 2, `${issuer.jwksRequests - before} JWKS requests for 20 forged tokens`);
  });
});

describe('limits per user of an app', () => {
  let capped: TestServer;

  after(async () => {
    await capped?.close();
  });

  test('connection cap per client and subject', async () => {
    capped = await startTestServer({ role: 'gateway', issuer: issuer.url, audience, issuerCaFile: issuer.caFile, maxConnectionsPerClient: 1 });
    const tokenOf = (sub: string) => signWith(issuer.keys[0], { sub, client_id: 'web-app' });
    const probe = async (sub: string) => probeDeviceConnection(capped.port, capped.caPem, 'web-app', await tokenOf(sub));

    const first = await openDeviceSocket(capped, { clientId: 'web-app', accessToken: await tokenOf('ada') });
    try {
      const otherUser = await probe('grace');
      const sameUser = await probe('ada');

      assert.equal(otherUser.status, 101);
      assert.deepEqual([sameUser.status, sameUser.error], [429, 'too_many_connections']);
    } finally {
      first.close();
    }
  });
});

describe('issuer unreachable', () => {
  let isolated: TestServer;

  after(async () => {
    await isolated?.close();
    await issuer.start().catch(() => undefined);
  });

  test('issuer down gives 503 until return', async () => {
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
