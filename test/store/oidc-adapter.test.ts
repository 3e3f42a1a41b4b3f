import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { epochSeconds, openStore, type Store } from '../../src/store/database.ts';
import { clientSecretMatches, deleteDevice, findDeviceClient, hashClientSecret, insertDevice } from '../../src/store/devices.ts';
import { createOidcAdapter, pruneExpiredPayloads } from '../../src/store/oidc-adapter.ts';
import { insertRevokedGrant, isGrantRevoked, pruneRevokedGrants } from '../../src/store/revocations.ts';
import { loadOrCreateSecret } from '../../src/store/secrets.ts';
import { loadSigningKeys } from '../../src/store/signing-keys.ts';
import { temporaryDataDir } from '../support/server.ts';

let store: Store;
let dataDir: string;
before(async () => {
  dataDir = temporaryDataDir();
  store = await openStore(dataDir);
});
after(async () => {
  await store.destroy();
});

describe('oidc adapter', () => {
  test('upsert then find returns payload', async () => {
    const Adapter = createOidcAdapter(store);
    const adapter = new Adapter('RefreshToken');
    await adapter.upsert('rt-1', { grantId: 'g-1', accountId: 'alice' }, 60);

    assert.deepEqual(await adapter.find('rt-1'), { grantId: 'g-1', accountId: 'alice' });
    assert.equal(await new Adapter('AccessToken').find('rt-1'), undefined);
  });

  test('consume marks payload consumed', async () => {
    const adapter = new (createOidcAdapter(store))('RefreshToken');
    await adapter.upsert('rt-2', { grantId: 'g-2' }, 60);
    await adapter.consume('rt-2');

    const found = await adapter.find('rt-2');
    assert.equal(typeof found?.consumed, 'number');
  });

  test('expired payload is not found and pruned', async () => {
    const adapter = new (createOidcAdapter(store))('AuthorizationCode');
    await adapter.upsert('code-1', { grantId: 'g-3' }, 60);
    await store.updateTable('oidc_payloads').set({ expires_at: epochSeconds() - 1 }).where('id', '=', 'code-1').execute();

    assert.equal(await adapter.find('code-1'), undefined);
    assert.ok(await pruneExpiredPayloads(store) >= 1);
    const row = await store.selectFrom('oidc_payloads').select('id').where('id', '=', 'code-1').executeTakeFirst();
    assert.equal(row, undefined);
  });

  test('revokeByGrantId removes every model of the grant', async () => {
    const Adapter = createOidcAdapter(store);
    await new Adapter('RefreshToken').upsert('rt-3', { grantId: 'g-4' }, 60);
    await new Adapter('DeviceCode').upsert('dc-1', { grantId: 'g-4', userCode: 'BCDFGHJK' }, 60);
    await new Adapter('RefreshToken').upsert('rt-4', { grantId: 'g-5' }, 60);

    await new Adapter('RefreshToken').revokeByGrantId('g-4');

    assert.equal(await new Adapter('RefreshToken').find('rt-3'), undefined);
    assert.equal(await new Adapter('DeviceCode').findByUserCode('BCDFGHJK'), undefined);
    assert.deepEqual(await new Adapter('RefreshToken').find('rt-4'), { grantId: 'g-5' });
  });

  test('findByUid and findByUserCode use their columns', async () => {
    const Adapter = createOidcAdapter(store);
    await new Adapter('Session').upsert('s-1', { uid: 'uid-1', accountId: 'bob' }, 60);
    await new Adapter('DeviceCode').upsert('dc-2', { userCode: 'XZXZXZXZ' }, 60);

    assert.equal((await new Adapter('Session').findByUid('uid-1'))?.accountId, 'bob');
    assert.deepEqual(await new Adapter('DeviceCode').findByUserCode('XZXZXZXZ'), { userCode: 'XZXZXZXZ' });
  });
});

describe('devices', () => {
  test('client metadata carries the secret hash', async () => {
    await insertDevice(store, { client_id: 'meter-1', auth_method: 'client_secret_basic', secret_hash: hashClientSecret('s3cret'), jwks: null, owner: null });

    const client = await findDeviceClient(store, 'meter-1');
    assert.equal(client?.client_secret, hashClientSecret('s3cret'));
    assert.notEqual(client?.client_secret, 's3cret');
    assert.equal(client?.token_endpoint_auth_method, 'client_secret_basic');
  });

  test('secret comparison accepts only the secret', () => {
    const hash = hashClientSecret('right');
    assert.equal(clientSecretMatches(hash, 'right'), true);
    assert.equal(clientSecretMatches(hash, 'wrong'), false);
    assert.equal(clientSecretMatches(hash, ''), false);
  });

  test('removing a device deletes its artefacts', async () => {
    await insertDevice(store, { client_id: 'meter-2', auth_method: 'client_secret_basic', secret_hash: hashClientSecret('x'), jwks: null, owner: null });
    const Adapter = createOidcAdapter(store);
    await new Adapter('RefreshToken').upsert('rt-meter-2', { clientId: 'meter-2', grantId: 'g-m2' }, 60);
    await new Adapter('RefreshToken').upsert('rt-other', { clientId: 'meter-1', grantId: 'g-m1' }, 60);

    assert.equal(await deleteDevice(store, 'meter-2'), true);
    assert.equal(await findDeviceClient(store, 'meter-2'), undefined);
    assert.equal(await new Adapter('RefreshToken').find('rt-meter-2'), undefined);
    assert.ok(await new Adapter('RefreshToken').find('rt-other'));
    assert.equal(await deleteDevice(store, 'meter-2'), false);
  });
});

describe('revoked grants', () => {
  test('deny-list entry lasts until expiry', async () => {
    await insertRevokedGrant(store, 'g-live', epochSeconds() + 600);
    await insertRevokedGrant(store, 'g-old', epochSeconds() - 1);

    assert.equal(await isGrantRevoked(store, 'g-live'), true);
    assert.equal(await isGrantRevoked(store, 'g-old'), false);
    assert.equal(await isGrantRevoked(store, 'g-never'), false);
    assert.equal(await pruneRevokedGrants(store), 1);
  });

  test('second revocation keeps later expiry', async () => {
    const later = epochSeconds() + 900;
    await insertRevokedGrant(store, 'g-twice', later);
    await insertRevokedGrant(store, 'g-twice', epochSeconds() + 10);

    const row = await store.selectFrom('revoked_grants').select('expires_at').where('grant_id', '=', 'g-twice').executeTakeFirstOrThrow();
    assert.equal(row.expires_at, later);
  });
});

describe('secrets and keys', () => {
  test('secret is created once', async () => {
    const first = await loadOrCreateSecret(store, 'test_key');
    const second = await loadOrCreateSecret(store, 'test_key');
    assert.equal(first, second);
    assert.equal(Buffer.from(first, 'base64url').length, 32);
  });

  test('signing key is ES256 and stable', async () => {
    const [first] = await loadSigningKeys(store);
    const [again] = await loadSigningKeys(store);
    assert.equal(first.alg, 'ES256');
    assert.equal(first.crv, 'P-256');
    assert.equal(typeof first.kid, 'string');
    assert.equal(again.kid, first.kid);
  });

  test('reopened store keeps data', async () => {
    const reopened = await openStore(dataDir);
    const [key] = await loadSigningKeys(reopened);
    const [original] = await loadSigningKeys(store);
    await reopened.destroy();
    assert.equal(key.kid, original.kid);
  });
});

describe('consume race', () => {
  test('second consume revokes the grant', async () => {
    const revokedGrants: string[] = [];
    const Adapter = createOidcAdapter(store, { onGrantRevoked: async (grantId) => { revokedGrants.push(grantId); } });
    const adapter = new Adapter('RefreshToken');
    await adapter.upsert('rt-race', { grantId: 'g-race' }, 60);
    await new Adapter('AccessToken').upsert('at-race', { grantId: 'g-race' }, 60);

    await adapter.consume('rt-race');
    await assert.rejects(adapter.consume('rt-race'), (error: Error & { error?: string }) => error.error === 'invalid_grant');

    assert.deepEqual(revokedGrants, ['g-race']);
    assert.equal(await new Adapter('AccessToken').find('at-race'), undefined);
  });
});
