// The revocation check's verdict cache. A token admitted once skips the database until a revocation
// is applied, the events cannot be read, or the entry ages out. `confirm` reads the database again
// when a revocation arrived while the handshake waited. The tests run on a real SQLite store.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { after, before, beforeEach, describe, test } from 'node:test';

import { decodeJwt } from 'jose';

import { revocationCheck } from '../../src/gateway/guard/revocation.ts';
import type { HandshakeState } from '../../src/gateway/handshake.ts';
import { RevocationVerdicts } from '../../src/gateway/revocation-verdicts.ts';
import type { VerifiedToken } from '../../src/gateway/token-verifier.ts';
import { epochSeconds, openStore, type Store } from '../../src/store/database.ts';
import { insertDevice } from '../../src/store/devices.ts';
import { recordRevocation, tokenKey } from '../../src/store/revocation-events.ts';
import { rawHandshake } from '../support/raw-handshake.ts';
import { addDevice, deviceToken as fetchDeviceToken, startTestServer, temporaryDataDir } from '../support/server.ts';
import { deviceHeaders, openDeviceSocket } from '../support/websocket.ts';

const issuer = 'https://gateway.test';
let store: Store;
let dataDir: string;
let tokenNumber = 0;

function deviceToken(clientId: string): VerifiedToken {
  tokenNumber += 1;
  const now = epochSeconds();
  const payload = { iss: issuer, sub: clientId, client_id: clientId, jti: `jti-${tokenNumber}`, iat: now, exp: now + 300 };
  return { sub: clientId, clientId, exp: payload.exp, jti: payload.jti, grantId: null, scope: 'subscribe:devices/{client_id}/#', payload };
}

function deviceState(token: VerifiedToken): HandshakeState {
  return {
    request: {} as IncomingMessage,
    url: new URL('https://gateway.test/ws'),
    peerAddress: '127.0.0.1',
    kind: 'device',
    token: 'presented',
    scheme: 'bearer',
    offeredProtocols: [],
    verified: token,
  };
}

async function revokeInDatabase(token: VerifiedToken): Promise<void> {
  // As another process that records a revocation without announcing it does.
  await recordRevocation(store, { kind: 'token', value: tokenKey(issuer, token.jti), reason: 'operator', expiresAt: token.exp + 60 });
}

before(async () => {
  dataDir = temporaryDataDir();
  store = await openStore({ dataDir, databaseUrl: null });
  await insertDevice(store, { client_id: 'cached-device', auth_method: 'client_secret_basic', secret_hash: 'sha256:unused', jwks: null, owner: null });
});

after(async () => {
  await store.destroy();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('revocation verdicts', () => {
  let verdicts: RevocationVerdicts;

  beforeEach(() => {
    verdicts = new RevocationVerdicts({ maxAgeMs: 60_000, maxFeedSilenceMs: 60_000 });
    verdicts.markFeedRead(performance.now());
  });

  test('cached until a revocation', async () => {
    const check = revocationCheck(store, { deviceRegistry: true }, verdicts);
    const token = deviceToken('cached-device');
    assert.equal(await check.run(deviceState(token)), undefined);

    await revokeInDatabase(token);
    const cached = check.run(deviceState(token));
    assert.equal(cached, undefined, 'the cached verdict answers at once, without a promise');

    verdicts.invalidate();
    assert.equal(await check.run(deviceState(token)), 'token_revoked');
  });

  test('refusals not cached', async () => {
    const check = revocationCheck(store, { deviceRegistry: true }, verdicts);
    const token = deviceToken('unregistered-device');
    assert.equal(await check.run(deviceState(token)), 'token_revoked');
    assert.ok(check.run(deviceState(token)) instanceof Promise, 'the second handshake reads the database again');
  });

  test('unused while events go unread', async () => {
    const silent = new RevocationVerdicts({ maxAgeMs: 60_000, maxFeedSilenceMs: 60_000 });
    const check = revocationCheck(store, { deviceRegistry: true }, silent);
    const token = deviceToken('cached-device');
    assert.equal(await check.run(deviceState(token)), undefined);
    assert.ok(check.run(deviceState(token)) instanceof Promise, 'no successful poll yet, so the database is read');

    silent.markFeedRead(performance.now());
    assert.equal(check.run(deviceState(token)), undefined);
  });

  test('confirm rereads after a revocation', async () => {
    const check = revocationCheck(store, { deviceRegistry: true }, verdicts);
    const token = deviceToken('cached-device');
    const state = deviceState(token);
    assert.equal(await check.run(state), undefined);
    assert.equal(check.confirm!(state), undefined, 'nothing changed, so confirm answers at once');

    await revokeInDatabase(token);
    verdicts.invalidate();
    const confirmation = check.confirm!(state);
    assert.ok(confirmation instanceof Promise);
    assert.equal(await confirmation, 'token_revoked');
  });

  test('old epoch verdict not kept', async () => {
    const check = revocationCheck(store, { deviceRegistry: true }, verdicts);
    const token = deviceToken('cached-device');
    const pending = check.run(deviceState(token));
    verdicts.invalidate();
    assert.equal(await pending, undefined);
    assert.ok(check.run(deviceState(token)) instanceof Promise, 'the verdict belonged to an old epoch');
  });

  test('verdict ends at its basis', () => {
    const token = deviceToken('cached-device');
    verdicts.remember('device', token, token, { epoch: verdicts.epoch, holdsUntilMs: Date.now() - 1 });
    assert.equal(verdicts.lookup('device', token), undefined, 'a browser session that ended is read again');

    verdicts.remember('device', token, token, { epoch: verdicts.epoch, holdsUntilMs: Date.now() + 60_000 });
    assert.equal(verdicts.lookup('device', token), token);
    assert.equal(verdicts.lookup('browser', token), undefined, 'the kind is part of the verdict');
  });

  test('entry ages out', async () => {
    const shortLived = new RevocationVerdicts({ maxAgeMs: 50, maxFeedSilenceMs: 60_000 });
    shortLived.markFeedRead(performance.now());
    const check = revocationCheck(store, { deviceRegistry: true }, shortLived);
    const token = deviceToken('cached-device');
    assert.equal(await check.run(deviceState(token)), undefined);
    assert.equal(check.run(deviceState(token)), undefined);

    await new Promise((resolve) => setTimeout(resolve, 80));
    assert.ok(check.run(deviceState(token)) instanceof Promise);
  });
});

describe('revocation verdicts on a running server', () => {
  test('unannounced revocation closes cached socket', async () => {
    const server = await startTestServer();
    try {
      const device = { clientId: 'polled-device', accessToken: await fetchDeviceToken(server, await addDevice(server, 'polled-device')) };
      const first = await openDeviceSocket(server, device);
      first.close();
      await first.waitForClose();

      // The second handshake with the same token is admitted from the cache. Then the revocation
      // goes into the database as another process records it, with no admin socket and no Redis.
      const live = await openDeviceSocket(server, device);
      const claims = decodeJwt(device.accessToken);
      await recordRevocation(server.running.store, { kind: 'token', value: tokenKey(String(claims.iss), String(claims.jti)), reason: 'operator', expiresAt: Number(claims.exp) + 60 });

      assert.deepEqual(await live.waitForClose(), { code: 4403, reason: 'token_revoked' }, 'the event poll closes the socket');
      const rejected = await rawHandshake({ port: server.port, ca: server.caPem, headers: deviceHeaders(device) });
      assert.equal(rejected.status, 403);
      assert.equal(rejected.json?.error, 'token_revoked');
    } finally {
      await server.close();
    }
  });
});
