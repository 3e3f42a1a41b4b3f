// DPoP-bound tokens (RFC 9449) on the WebSocket handshake and in band, against a real server over
// real TLS. The proofs are made with jose in test/support/dpop.ts, independent of the device SDK.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { decodeJwt } from 'jose';

import { rawHandshake, type RawResponse } from '../support/raw-handshake.ts';
import { deviceCodeGrantType, postOauthForm } from '../support/oauth-flows.ts';
import { addDevice, addUser, deviceToken, runServerCli, startTestServer, type TestServer } from '../support/server.ts';
import {
  athOf, basicAuthorization, dpopDeviceToken, dpopTokenRequest, generateProofKey, handshakeProof, makeProof, type ProofKey,
} from '../support/dpop.ts';
import { openSocket, type GatewaySocket } from '../support/websocket.ts';

const clientId = 'dpop-sensor';
const testOptions = { timeout: 120_000 };

let server: TestServer;
let device: { client_id: string; client_secret: string };
let key: ProofKey;
let otherKey: ProofKey;

before(async () => {
  server = await startTestServer();
  device = await addDevice(server, clientId);
  key = await generateProofKey();
  otherKey = await generateProofKey();
});

after(async () => {
  await server.close();
});

function dpopHeaders(accessToken: string, proof: string | string[] | null): Record<string, string | string[] | null> {
  return { Authorization: `DPoP ${accessToken}`, DPoP: proof, 'X-Client-Id': clientId };
}

function handshake(headers: Record<string, string | string[] | null>): Promise<RawResponse> {
  return rawHandshake({ port: server.port, ca: server.caPem, headers });
}

function assertProofRejected(response: RawResponse, attack: string): void {
  assert.equal(response.status, 401, `${attack}: got ${response.status} ${response.body}`);
  assert.equal(response.headers['x-portcullis-error'], 'invalid_dpop_proof', attack);
  assert.equal(response.json?.error, 'invalid_dpop_proof', attack);
  assert.match(response.headers['www-authenticate'] ?? '', /^DPoP error="invalid_dpop_proof", algs="ES256 /, attack);
}

function openDpopSocket(accessToken: string, proof: string): Promise<GatewaySocket> {
  return openSocket({ server, headers: { Authorization: `DPoP ${accessToken}`, DPoP: proof, 'X-Client-Id': clientId } });
}

describe('DPoP-bound tokens from the auth server', () => {
  test('proof binds the token after a nonce', testOptions, async () => {
    const response = await dpopTokenRequest(server, key, { grant_type: 'client_credentials' }, basicAuthorization(device));

    assert.equal(response.status, 200);
    assert.equal(response.requests, 2, 'the first request must be answered with use_dpop_nonce');
    assert.equal(response.body.token_type, 'DPoP');
    const claims = decodeJwt(response.body.access_token as string);
    assert.deepEqual(claims.cnf, { jkt: key.jkt });
  });

  test('proof without nonce gets use_dpop_nonce', testOptions, async () => {
    const htu = `${server.url}/oauth/token`;
    const response = await server.fetch(htu, {
      method: 'POST',
      headers: { ...basicAuthorization(device), 'content-type': 'application/x-www-form-urlencoded', dpop: await makeProof(key, { htm: 'POST', htu }) },
      body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
    });
    const body = await response.json() as Record<string, unknown>;

    assert.equal(response.status, 400);
    assert.equal(body.error, 'use_dpop_nonce');
    assert.ok(response.headers.get('dpop-nonce'));
  });
});

describe('the DPoP handshake', () => {
  let accessToken: string;

  before(async () => {
    accessToken = await dpopDeviceToken(server, device, key);
  });

  test('a bound token with a proof by its key connects', testOptions, async () => {
    const socket = await openDpopSocket(accessToken, await handshakeProof(server, key, accessToken));

    assert.equal(socket.welcome.client_id, clientId);
    await socket.close();
  });

  test('the DPoP scheme name is case-insensitive', testOptions, async () => {
    const response = await handshake({ ...dpopHeaders(accessToken, await handshakeProof(server, key, accessToken)), Authorization: `dpop ${accessToken}` });

    assert.equal(response.status, 101);
  });

  test('refused: the token without its proof', testOptions, async () => {
    assertProofRejected(await handshake(dpopHeaders(accessToken, null)), 'no proof');
  });

  test('refused: a proof signed by another key', testOptions, async () => {
    assertProofRejected(await handshake(dpopHeaders(accessToken, await handshakeProof(server, otherKey, accessToken))), 'other key');
  });

  test('refused: a replayed proof jti', testOptions, async () => {
    const proof = await handshakeProof(server, key, accessToken);
    assert.equal((await handshake(dpopHeaders(accessToken, proof))).status, 101);

    assertProofRejected(await handshake(dpopHeaders(accessToken, proof)), 'same proof again');
    const sameJti = await handshakeProof(server, key, accessToken, { jti: decodeJwt(proof).jti as string });
    assertProofRejected(await handshake(dpopHeaders(accessToken, sameJti)), 'new proof with a used jti');
  });

  test('refused: a proof for another htu', testOptions, async () => {
    const port = server.port;
    for (const htu of [
      `${server.url}/oauth/token`, 'https://elsewhere.invalid/ws', `wss://localhost:${port}/ws`, `http://localhost:${port}/ws`,
      // Spellings the WHATWG URL parser would repair into the right URL.
      `https:localhost:${port}/ws`, `https://localhost:${port}\\ws`, ` https://localhost:${port}/ws`, `https://localhost:${port}/ws\t`,
      `https://local\nhost:${port}/ws`, `https://localhost:0${port}/ws`, `https://localhost:${port}/./ws`, `https://localhost:${port}/a/../ws`,
      `https://user@localhost:${port}/ws`,
    ]) {
      assertProofRejected(await handshake(dpopHeaders(accessToken, await handshakeProof(server, key, accessToken, { htu }))), `htu ${htu}`);
    }
  });

  test('a proof htu with a query or fragment is compared without them', testOptions, async () => {
    const proof = await handshakeProof(server, key, accessToken, { htu: `${server.url}/ws?x=1#y` });

    assert.equal((await handshake(dpopHeaders(accessToken, proof))).status, 101);
  });

  test('refused: a proof for another htm', testOptions, async () => {
    for (const htm of ['POST', 'get', 'CONNECT']) {
      assertProofRejected(await handshake(dpopHeaders(accessToken, await handshakeProof(server, key, accessToken, { htm }))), `htm ${htm}`);
    }
  });

  test('refused: a stale iat, and an iat from the future', testOptions, async () => {
    const now = Math.floor(Date.now() / 1000);
    const leeway = server.options.clockLeewaySeconds;
    for (const iat of [now - 60 - leeway - 30, now + leeway + 30]) {
      assertProofRejected(await handshake(dpopHeaders(accessToken, await handshakeProof(server, key, accessToken, { iat }))), `iat ${iat - now}`);
    }
  });

  test('refused: an ath for another token, and no ath', testOptions, async () => {
    const otherToken = await dpopDeviceToken(server, device, key);
    assertProofRejected(await handshake(dpopHeaders(accessToken, await handshakeProof(server, key, accessToken, { ath: athOf(otherToken) }))), 'ath of another token');
    assertProofRejected(await handshake(dpopHeaders(accessToken, await handshakeProof(server, key, accessToken, { ath: null }))), 'no ath');
  });

  test('refused: two DPoP headers, even if one is valid', testOptions, async () => {
    const proofs = [await handshakeProof(server, key, accessToken), await handshakeProof(server, key, accessToken)];

    assertProofRejected(await handshake(dpopHeaders(accessToken, proofs)), 'two proofs');
  });

  test('refused: wrong typ, private jwk, HMAC', testOptions, async () => {
    assertProofRejected(await handshake(dpopHeaders(accessToken, await makeProof(key, { htm: 'GET', htu: `${server.url}/ws`, ath: athOf(accessToken) }, { typ: 'JWT' }))), 'typ JWT');

    const privateJwk = { ...key.publicJwk, d: 'AAAA' };
    assertProofRejected(await handshake(dpopHeaders(accessToken, await makeProof(key, { htm: 'GET', htu: `${server.url}/ws`, ath: athOf(accessToken) }, { jwk: privateJwk }))), 'private jwk');

    const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: 'c2VjcmV0' } })).toString('base64url');
    const payload = Buffer.from(JSON.stringify({ jti: 'hmac', htm: 'GET', htu: `${server.url}/ws`, iat: Math.floor(Date.now() / 1000), ath: athOf(accessToken) })).toString('base64url');
    assertProofRejected(await handshake(dpopHeaders(accessToken, `${header}.${payload}.AAAA`)), 'HS256');
  });

  test('refused as token_invalid: a bound token used as a bearer token', testOptions, async () => {
    const response = await handshake({ Authorization: `Bearer ${accessToken}`, 'X-Client-Id': clientId });

    assert.equal(response.status, 401);
    assert.equal(response.headers['x-portcullis-error'], 'token_invalid');
  });

  test('refused as token_invalid: an unbound token sent with the DPoP scheme', testOptions, async () => {
    const bearerToken = await deviceToken(server, device);
    const response = await handshake(dpopHeaders(bearerToken, await handshakeProof(server, key, bearerToken)));

    assert.equal(response.status, 401);
    assert.equal(response.headers['x-portcullis-error'], 'token_invalid');
  });

  test('plain bearer tokens keep working', testOptions, async () => {
    const bearerToken = await deviceToken(server, device);
    const response = await handshake({ Authorization: `Bearer ${bearerToken}`, 'X-Client-Id': clientId });

    assert.equal(response.status, 101);
  });

  test('a refused proof is logged with the part that failed', testOptions, async () => {
    await handshake(dpopHeaders(accessToken, await handshakeProof(server, key, accessToken, { htm: 'PUT' })));

    const rejected = server.logs.map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.event === 'handshake.rejected' && entry.code === 'invalid_dpop_proof');
    assert.ok(rejected.some((entry) => entry.detail === 'htm'));
  });
});

describe('in-band refresh of a DPoP-bound connection', () => {
  let socket: GatewaySocket;

  before(async () => {
    const accessToken = await dpopDeviceToken(server, device, key);
    socket = await openDpopSocket(accessToken, await handshakeProof(server, key, accessToken));
  });

  after(async () => {
    await socket.close();
  });

  test('same key with fresh proof accepted', testOptions, async () => {
    const next = await dpopDeviceToken(server, device, key);
    socket.send({ type: 'auth', id: 'refresh-1', token: next, dpop: await handshakeProof(server, key, next) });

    const reply = await socket.nextFrameWhere((frame) => frame.id === 'refresh-1', 'auth_ok');
    assert.equal(reply.type, 'auth_ok');
    assert.ok(socket.isOpen);
  });

  for (const [name, frameOf, code] of [
    ['without a proof', async (next: string) => ({ token: next }), 'invalid_dpop_proof'],
    ['with a proof for the old token', async (next: string) => ({ token: next, dpop: await handshakeProof(server, key, 'the old token') }), 'invalid_dpop_proof'],
    ['bound to another key', async () => {
      const moved = await dpopDeviceToken(server, device, otherKey);
      return { token: moved, dpop: await handshakeProof(server, otherKey, moved) };
    }, 'token_invalid'],
    ['as a bearer token', async () => ({ token: await deviceToken(server, device) }), 'token_invalid'],
  ] as const) {
    test(`refused with 4403 ${code}: a new token ${name}`, testOptions, async () => {
      const accessToken = await dpopDeviceToken(server, device, key);
      const victim = await openDpopSocket(accessToken, await handshakeProof(server, key, accessToken));
      const next = await dpopDeviceToken(server, device, key);

      victim.send({ type: 'auth', id: 'refresh', ...await frameOf(next) });

      const closed = await victim.waitForClose();
      assert.equal(closed.code, 4403);
      assert.equal(closed.reason, code);
    });
  }
});

describe('DPoP-bound device-flow grants', () => {
  let refreshToken: string;

  before(async () => {
    await addUser(server, 'dpop-owner', 'a long enough password for the dpop owner');
    const authorization = await postOauthForm(server, '/oauth/device/authorize', {}, device);
    const { device_code: deviceCode, user_code: userCode } = authorization.body as { device_code: string; user_code: string };
    const approval = await runServerCli(server, ['devices', 'approve', userCode, '--user', 'dpop-owner']);
    assert.equal(approval.code, 0, approval.stderr);

    const response = await dpopTokenRequest(server, key, { grant_type: deviceCodeGrantType, device_code: deviceCode }, basicAuthorization(device));
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.deepEqual(decodeJwt(response.body.access_token as string).cnf, { jkt: key.jkt });
    refreshToken = response.body.refresh_token as string;
  });

  test('refresh token bound to the key', testOptions, async () => {
    const withoutProof = await postOauthForm(server, '/oauth/token', { grant_type: 'refresh_token', refresh_token: refreshToken }, device);
    assert.equal(withoutProof.status, 400);
    assert.equal(withoutProof.body.error, 'invalid_grant');

    const otherKeyResponse = await dpopTokenRequest(server, otherKey, { grant_type: 'refresh_token', refresh_token: refreshToken }, basicAuthorization(device));
    assert.equal(otherKeyResponse.status, 400);
    assert.equal(otherKeyResponse.body.error, 'invalid_grant');

    const refreshed = await dpopTokenRequest(server, key, { grant_type: 'refresh_token', refresh_token: refreshToken }, basicAuthorization(device));
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.equal(refreshed.body.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(refreshed.body.access_token as string).cnf, { jkt: key.jkt });

    // The rotated refresh token keeps the binding.
    const rotated = await postOauthForm(server, '/oauth/token', { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token as string }, device);
    assert.equal(rotated.status, 400);
    assert.equal(rotated.body.error, 'invalid_grant');
  });
});

describe('DPoP-bound tokens at POST /api/publish', () => {
  let accessToken: string;
  const publishUrl = () => `${server.url}/api/publish`;
  const body = JSON.stringify({ channel: `devices/${clientId}/telemetry`, data: { reading: 1 } });

  before(async () => {
    accessToken = await dpopDeviceToken(server, device, key);
  });

  async function publish(headers: Record<string, string>): Promise<{ status: number; error: unknown; challenge: string | null }> {
    const response = await server.fetch(publishUrl(), { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    const json = await response.json() as Record<string, unknown>;
    return { status: response.status, error: json.error, challenge: response.headers.get('www-authenticate') };
  }

  test('a proof for this POST is accepted', testOptions, async () => {
    const proof = await makeProof(key, { htm: 'POST', htu: publishUrl(), ath: athOf(accessToken) });

    const response = await publish({ authorization: `DPoP ${accessToken}`, dpop: proof });

    assert.equal(response.status, 202);
  });

  test('refused: a handshake proof at the API', testOptions, async () => {
    const response = await publish({ authorization: `DPoP ${accessToken}`, dpop: await handshakeProof(server, key, accessToken) });

    assert.equal(response.status, 401);
    assert.equal(response.error, 'invalid_dpop_proof');
    assert.match(response.challenge ?? '', /^DPoP error="invalid_dpop_proof"/);
  });

  test('refused: the bound token as a bearer token', testOptions, async () => {
    const response = await publish({ authorization: `Bearer ${accessToken}` });

    assert.equal(response.status, 401);
    assert.equal(response.error, 'token_invalid');
  });
});

describe('replay across a restart without Redis', () => {
  test('a used proof is refused after a restart', testOptions, async () => {
    const first = await startTestServer();
    const restartedDevice = await addDevice(first, 'restart-sensor');
    const accessToken = await dpopDeviceToken(first, restartedDevice, key);
    const proof = await handshakeProof(first, key, accessToken);
    const headers = { Authorization: `DPoP ${accessToken}`, DPoP: proof, 'X-Client-Id': 'restart-sensor' };
    assert.equal((await rawHandshake({ port: first.port, ca: first.caPem, headers })).status, 101);
    await first.close();

    const second = await startTestServer({ dataDir: first.dataDir, port: first.port });
    try {
      const replayed = await rawHandshake({ port: second.port, ca: second.caPem, headers });

      assert.equal(replayed.status, 401);
      assert.equal(replayed.headers['x-portcullis-error'], 'invalid_dpop_proof');
    } finally {
      await second.close();
    }
  });
});
