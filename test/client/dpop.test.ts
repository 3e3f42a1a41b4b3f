// DPoP in the device SDK at the token endpoint of a real server: tokens bound to the SDK's key or
// the caller's, the retry with the server nonce, refresh with the same key, and what a proof holds.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type JWK } from 'jose';

import { DeviceClient, generateDpopKey, type DpopKeyPair } from '../../src/client/device.ts';
import { DpopSigner, proofUrl } from '../../src/client/dpop.ts';
import { TokenSource, type AccessToken, type RefreshTokenStore } from '../../src/client/token-source.ts';
import { rememberSecret } from '../support/capture.ts';
import { startSecondIssuer } from '../support/second-issuer.ts';
import { approveDevice } from '../support/oauth-flows.ts';
import { addDevice, addUser, startTestServer, type TestServer } from '../support/server.ts';
import { clientOptions, logLines, Recorder, stopped, tokensIssued } from './recorder.ts';

let server: TestServer;

before(async () => {
  server = await startTestServer();
});

after(async () => {
  await server?.close();
});

/** Fetches one token through a TokenSource of `device` that signs proofs with `signer`. */
async function fetchToken(device: { client_id: string; client_secret: string }, signer: DpopSigner | undefined, source?: TokenSource): Promise<AccessToken> {
  const tokens = source ?? new TokenSource({ issuer: server.url, clientId: device.client_id, credentials: { clientSecret: device.client_secret }, ca: server.caPem, dpop: signer });
  try {
    const token = await tokens.fetch();
    rememberSecret(token.value);
    return token;
  } finally {
    if (!source) {
      await tokens.close();
    }
  }
}

function boundThumbprint(token: AccessToken): unknown {
  return (decodeJwt(token.value).cnf as { jkt?: string } | undefined)?.jkt;
}

function nonceRejections(clientId: string): number {
  return logLines(server).filter((line) => line.event === 'token.rejected' && line.client_id === clientId && line.error === 'use_dpop_nonce').length;
}

test('generated key binds the token', async () => {
  const device = await addDevice(server, 'dpop-generated');
  const signer = new DpopSigner(true);
  const tokens = new TokenSource({ issuer: server.url, clientId: device.client_id, credentials: { clientSecret: device.client_secret }, ca: server.caPem, dpop: signer });
  try {
    const first = await fetchToken(device, signer, tokens);

    assert.equal(first.type, 'DPoP');
    assert.equal(boundThumbprint(first), await signer.thumbprint());
    assert.equal(nonceRejections(device.client_id), 1, 'the first request did not meet a nonce challenge');
    assert.equal(tokensIssued(server, device.client_id, 'client_credentials'), 1);

    // The nonce of the last response is still valid, so the next request needs no retry.
    const second = await fetchToken(device, signer, tokens);
    assert.equal(boundThumbprint(second), await signer.thumbprint());
    assert.equal(nonceRejections(device.client_id), 1);
    assert.equal(tokensIssued(server, device.client_id, 'client_credentials'), 2);
  } finally {
    await tokens.close();
  }
});

test('without dpop the token is bearer', async () => {
  const device = await addDevice(server, 'dpop-absent');

  const token = await fetchToken(device, undefined);

  assert.equal(token.type, 'Bearer');
  assert.equal(boundThumbprint(token), undefined);
  assert.equal(nonceRejections(device.client_id), 0);
});

// Each row makes a key pair in one of the forms a caller may hold: a non-extractable CryptoKey, or a
// KeyObject as loaded from a PEM file or handed out by a key store.
const callerKeys: Array<[name: string, make: () => Promise<DpopKeyPair>]> = [
  ['ES256 CryptoKey', async () => generateDpopKey()],
  ['ES384 KeyObject', async () => nodeKeyPair(crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' }))],
  ['Ed25519 KeyObject', async () => nodeKeyPair(crypto.generateKeyPairSync('ed25519'))],
  ['PS256 KeyObject', async () => nodeKeyPair(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }))],
  ['RS256 with alg', async () => ({ ...nodeKeyPair(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })), alg: 'RS256' })],
];

function nodeKeyPair(pair: crypto.KeyPairKeyObjectResult): DpopKeyPair {
  rememberSecret(pair.privateKey.export({ format: 'jwk' }).d);
  return { privateKey: pair.privateKey, publicJwk: pair.publicKey.export({ format: 'jwk' }) as JWK };
}

describe('caller-supplied key', () => {
  for (const [name, make] of callerKeys) {
    test(`${name} binds the token`, async () => {
      const device = await addDevice(server, `dpop-caller-${name.toLowerCase().replaceAll(' ', '-')}`);
      const key = await make();

      const token = await fetchToken(device, new DpopSigner(key));

      assert.equal(token.type, 'DPoP');
      assert.equal(boundThumbprint(token), await calculateJwkThumbprint(key.publicJwk, 'sha256'));
    });
  }
});

test('private JWK members stay out of proofs', async () => {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  rememberSecret(privateJwk.d);
  const signer = new DpopSigner({ privateKey, publicJwk: privateJwk });

  const proof = await signer.proof({ htm: 'GET', url: 'wss://localhost:8443/ws?x=1#y', accessToken: 'token-value' });

  const header = decodeProtectedHeader(proof);
  assert.equal(header.typ, 'dpop+jwt');
  assert.equal(header.alg, 'ES256');
  assert.deepEqual(Object.keys(header.jwk!).sort(), ['crv', 'kty', 'x', 'y']);
  const claims = decodeJwt(proof);
  assert.equal(claims.htm, 'GET');
  assert.equal(claims.htu, 'https://localhost:8443/ws');
  assert.equal(claims.ath, crypto.createHash('sha256').update('token-value').digest('base64url'));
  assert.equal(typeof claims.jti, 'string');
  assert.equal(typeof claims.iat, 'number');
  assert.equal(claims.nonce, undefined);
  assert.notEqual(decodeJwt(await signer.proof({ htm: 'GET', url: 'wss://localhost:8443/ws' })).jti, claims.jti, 'two proofs share a jti');
});

test('proof url of websocket urls', () => {
  const cases: Array<[url: string, htu: string]> = [
    ['wss://localhost:8443/ws', 'https://localhost:8443/ws'],
    ['wss://gateway.example:443/ws?token=no#frag', 'https://gateway.example/ws'],
    ['ws://127.0.0.1:8080/ws', 'http://127.0.0.1:8080/ws'],
    ['https://localhost:8443/oauth/token?x=1', 'https://localhost:8443/oauth/token'],
  ];
  for (const [url, htu] of cases) {
    assert.equal(proofUrl(url), htu, url);
  }
});

test('mismatched key pair is rejected', async () => {
  const device = await addDevice(server, 'dpop-mismatch');
  const one = await generateDpopKey();
  const other = await generateDpopKey();
  const signer = new DpopSigner({ privateKey: one.privateKey, publicJwk: other.publicJwk });

  await assert.rejects(fetchToken(device, signer), { name: 'PortcullisClientError', code: 'invalid_dpop_key', retryable: false });
  assert.equal(tokensIssued(server, device.client_id, 'client_credentials'), 0);
});

test('algorithm outside the allow-list is rejected', async () => {
  const key = await generateDpopKey();

  await assert.rejects(new DpopSigner({ ...key, alg: 'HS256' }).thumbprint(), { code: 'invalid_dpop_key' });
  await assert.rejects(new DpopSigner({ ...key, alg: 'none' }).thumbprint(), { code: 'invalid_dpop_key' });
});

test('client with a bad key stops', async () => {
  const device = await addDevice(server, 'dpop-client-bad-key');
  const one = await generateDpopKey();
  const other = await generateDpopKey();
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, {
    credentials: { clientSecret: device.client_secret },
    dpop: { privateKey: one.privateKey, publicJwk: other.publicJwk },
  }));
  try {
    client.connect();
    await stopped(recorder);
  } finally {
    await client.close();
  }

  assert.deepEqual(recorder.changes, [{ state: 'connecting', reason: 'started' }, { state: 'stopped', reason: 'invalid_dpop_key' }]);
  await assert.rejects(client.dpopThumbprint(), { code: 'invalid_dpop_key' });
});

test('client reports the key thumbprint', async () => {
  const key = await generateDpopKey();
  const recorder = new Recorder();
  const withKey = new DeviceClient(clientOptions(server, 'dpop-thumbprint', recorder, { dpop: key }));
  const withoutKey = new DeviceClient(clientOptions(server, 'dpop-thumbprint', recorder));

  assert.equal(await withKey.dpopThumbprint(), await calculateJwkThumbprint(key.publicJwk, 'sha256'));
  assert.equal(await withoutKey.dpopThumbprint(), null);
  await Promise.all([withKey.close(), withoutKey.close()]);
});

/** An in-memory refresh token store. */
class MemoryStore implements RefreshTokenStore {
  readonly saved: string[] = [];

  constructor(private token: string) {}

  async load(): Promise<string | null> {
    return this.token;
  }

  async save(token: string): Promise<void> {
    rememberSecret(token);
    this.token = token;
    this.saved.push(token);
  }
}

test('refresh keeps the key', async () => {
  await addUser(server, 'dpop-owner', 'dpop owner password');
  const device = await addDevice(server, 'dpop-refresh');
  const grant = await approveDevice(server, device, 'dpop-owner');
  const store = new MemoryStore(grant.refreshToken);
  const signer = new DpopSigner(await generateDpopKey());
  const tokens = new TokenSource({ issuer: server.url, clientId: device.client_id, credentials: { clientSecret: device.client_secret }, ca: server.caPem, dpop: signer, refreshTokenStore: store });
  try {
    const first = await fetchToken(device, signer, tokens);
    const second = await fetchToken(device, signer, tokens);

    const thumbprint = await signer.thumbprint();
    assert.equal(first.type, 'DPoP');
    assert.equal(boundThumbprint(first), thumbprint);
    assert.equal(second.type, 'DPoP');
    assert.equal(boundThumbprint(second), thumbprint);
    assert.equal(decodeJwt(second.value).grant_id, grant.grantId);
    assert.equal(store.saved.length, 2, 'the refresh token did not rotate twice');
    assert.equal(tokensIssued(server, device.client_id, 'refresh_token'), 2);
    assert.equal(nonceRejections(device.client_id), 1);
  } finally {
    await tokens.close();
  }
});

describe('an issuer that ignores DPoP', () => {
  test('a bearer token is refused', async () => {
    const device = { client_id: 'legacy-sensor', client_secret: crypto.randomBytes(32).toString('base64url'), scope: 'subscribe:devices/legacy-sensor/#' };
    rememberSecret(device.client_secret);
    const issuer = await startSecondIssuer([device], ['https://gateway.test/ws'], { dpop: false });
    const tokens = new TokenSource({ issuer: issuer.url, clientId: device.client_id, credentials: { clientSecret: device.client_secret }, ca: fs.readFileSync(issuer.caFile, 'utf8'), dpop: new DpopSigner(true) });

    try {
      await assert.rejects(tokens.fetch(), (error: Error & { code?: string }) => error.code === 'unexpected_token_type');
    } finally {
      await tokens.close();
      await issuer.stop();
    }
  });
});
