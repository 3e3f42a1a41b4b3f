// Store contract, part two: the oidc-provider adapter, run against every backend in `storeBackends`.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { epochSeconds, openStore } from '../../src/store/database.ts';
import { createOidcAdapter, pruneExpiredPayloads } from '../../src/store/oidc-adapter.ts';
import { storeBackends, useFreshStore } from '../support/store-backends.ts';

const isInvalidGrant = (error: Error & { error?: string }) => error.error === 'invalid_grant';

for (const backend of storeBackends) {
  describe(`oidc adapter on ${backend.name}`, () => {
    const opened = useFreshStore(backend);

    test('upsert then find returns payload', async () => {
      const Adapter = createOidcAdapter(opened.store);
      const adapter = new Adapter('RefreshToken');
      await adapter.upsert('rt-1', { grantId: 'g-1', accountId: 'alice' }, 60);

      assert.deepEqual(await adapter.find('rt-1'), { grantId: 'g-1', accountId: 'alice' });
      assert.equal(await new Adapter('AccessToken').find('rt-1'), undefined);
    });

    test('upsert replaces payload and clears consumed', async () => {
      const adapter = new (createOidcAdapter(opened.store))('AuthorizationCode');
      await adapter.upsert('code-r', { grantId: 'g-r', scope: 'old' }, 60);
      await adapter.consume('code-r');
      await adapter.upsert('code-r', { grantId: 'g-r', scope: 'new' }, 60);

      assert.deepEqual(await adapter.find('code-r'), { grantId: 'g-r', scope: 'new' });
    });

    test('payload without expiry never expires', async () => {
      const adapter = new (createOidcAdapter(opened.store))('Grant');
      await adapter.upsert('grant-forever', { accountId: 'alice' });

      const row = await opened.store.selectFrom('oidc_payloads').select('expires_at').where('id', '=', 'grant-forever').executeTakeFirstOrThrow();
      assert.equal(row.expires_at, null);
      assert.deepEqual(await adapter.find('grant-forever'), { accountId: 'alice' });
    });

    test('consume marks payload consumed', async () => {
      const adapter = new (createOidcAdapter(opened.store))('RefreshToken');
      await adapter.upsert('rt-2', { grantId: 'g-2' }, 60);
      await adapter.consume('rt-2');

      const found = await adapter.find('rt-2');
      assert.equal(typeof found?.consumed, 'number');
      assert.ok(Math.abs(Number(found?.consumed) - epochSeconds()) <= 5);
    });

    test('expired payload is not found and pruned', async () => {
      const adapter = new (createOidcAdapter(opened.store))('AuthorizationCode');
      await adapter.upsert('code-1', { grantId: 'g-3' }, 60);
      await adapter.upsert('code-live', { grantId: 'g-3' }, 60);
      await opened.store.updateTable('oidc_payloads').set({ expires_at: epochSeconds() - 1 }).where('id', '=', 'code-1').execute();

      assert.equal(await adapter.find('code-1'), undefined);
      assert.ok(await pruneExpiredPayloads(opened.store) >= 1);
      const row = await opened.store.selectFrom('oidc_payloads').select('id').where('id', '=', 'code-1').executeTakeFirst();
      assert.equal(row, undefined);
      assert.ok(await adapter.find('code-live'));
    });

    test('revokeByGrantId removes every model of the grant', async () => {
      const revoked: string[] = [];
      const Adapter = createOidcAdapter(opened.store, { onGrantRevoked: async (grantId) => { revoked.push(grantId); } });
      await new Adapter('RefreshToken').upsert('rt-3', { grantId: 'g-4' }, 60);
      await new Adapter('DeviceCode').upsert('dc-1', { grantId: 'g-4', userCode: 'BCDFGHJK' }, 60);
      await new Adapter('RefreshToken').upsert('rt-4', { grantId: 'g-5' }, 60);

      await new Adapter('RefreshToken').revokeByGrantId('g-4');
      assert.deepEqual(revoked, []);
      await new Adapter('AccessToken').revokeByGrantId('g-4');

      assert.deepEqual(revoked, ['g-4']);
      assert.equal(await new Adapter('RefreshToken').find('rt-3'), undefined);
      assert.equal(await new Adapter('DeviceCode').findByUserCode('BCDFGHJK'), undefined);
      assert.deepEqual(await new Adapter('RefreshToken').find('rt-4'), { grantId: 'g-5' });
    });

    test('findByUid and findByUserCode use their columns', async () => {
      const Adapter = createOidcAdapter(opened.store);
      await new Adapter('Session').upsert('s-1', { uid: 'uid-1', accountId: 'bob' }, 60);
      await new Adapter('DeviceCode').upsert('dc-2', { userCode: 'XZXZXZXZ' }, 60);

      assert.equal((await new Adapter('Session').findByUid('uid-1'))?.accountId, 'bob');
      assert.equal(await new Adapter('Interaction').findByUid('uid-1'), undefined);
      assert.deepEqual(await new Adapter('DeviceCode').findByUserCode('XZXZXZXZ'), { userCode: 'XZXZXZXZ' });
      assert.equal(await new Adapter('DeviceCode').findByUserCode('xzxzxzxz'), undefined);
    });

    test('destroy removes one artefact', async () => {
      const adapter = new (createOidcAdapter(opened.store))('Interaction');
      await adapter.upsert('i-1', { uid: 'i-1' }, 60);
      await adapter.upsert('i-2', { uid: 'i-2' }, 60);
      await adapter.destroy('i-1');

      assert.equal(await adapter.find('i-1'), undefined);
      assert.ok(await adapter.find('i-2'));
    });

    test('second consume revokes the grant', async () => {
      const revoked: string[] = [];
      const Adapter = createOidcAdapter(opened.store, { onGrantRevoked: async (grantId) => { revoked.push(grantId); } });
      const adapter = new Adapter('RefreshToken');
      await adapter.upsert('rt-race', { grantId: 'g-race' }, 60);
      await new Adapter('AccessToken').upsert('at-race', { grantId: 'g-race' }, 60);
      await new Adapter('Grant').upsert('g-race', { accountId: 'alice' }, 60);

      await adapter.consume('rt-race');
      await assert.rejects(adapter.consume('rt-race'), isInvalidGrant);

      assert.deepEqual(revoked, ['g-race']);
      assert.equal(await new Adapter('AccessToken').find('at-race'), undefined);
      assert.equal(await new Adapter('Grant').find('g-race'), undefined);
    });

    test('20 concurrent consumes on two stores succeed once', async () => {
      const other = await openStore(opened.target.location);
      try {
        const revoked: string[] = [];
        const hooks = { onGrantRevoked: async (grantId: string) => { revoked.push(grantId); } };
        const adapters = [opened.store, other].map((each) => new (createOidcAdapter(each, hooks))('RefreshToken'));
        await adapters[0].upsert('rt-20', { grantId: 'g-20' }, 60);
        await new (createOidcAdapter(opened.store))('Grant').upsert('g-20', { accountId: 'alice' }, 60);

        const results = await Promise.allSettled(Array.from({ length: 20 }, (_, index) => adapters[index % 2].consume('rt-20')));

        const fulfilled = results.filter((result) => result.status === 'fulfilled');
        const rejected = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
        assert.equal(fulfilled.length, 1);
        assert.equal(rejected.length, 19);
        for (const result of rejected) {
          assert.ok(isInvalidGrant(result.reason), String(result.reason));
        }
        assert.ok(revoked.length >= 1);
        assert.deepEqual([...new Set(revoked)], ['g-20']);
        const left = await opened.store.selectFrom('oidc_payloads').select('id').where((eb) => eb.or([eb('grant_id', '=', 'g-20'), eb('id', '=', 'g-20')])).execute();
        assert.deepEqual(left, []);
      } finally {
        await other.destroy();
      }
    });

    test('client model reads the devices table', async () => {
      const Adapter = createOidcAdapter(opened.store);
      assert.equal(await new Adapter('Client').find('no-such-device'), undefined);

      await opened.store.insertInto('devices').values({ client_id: 'adapter-device', auth_method: 'client_secret_basic', secret_hash: 'sha256:00', jwks: null, owner: null, scopes: null, created_at: epochSeconds() }).execute();
      assert.equal((await new Adapter('Client').find('adapter-device'))?.client_id, 'adapter-device');
    });
  });
}
