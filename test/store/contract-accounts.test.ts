// Store contract, part one: users, devices, signing keys, secrets and browser sessions, run
// against every backend in `storeBackends`.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { currentUserScopes } from '../../src/auth/channel-scopes.ts';
import { deleteBrowserSession, findBrowserSession, pruneBrowserSessions, upsertBrowserSession } from '../../src/store/browser-sessions.ts';
import { epochSeconds, openStore, type Store } from '../../src/store/database.ts';
import { clientSecretMatches, deleteDevice, findDevice, findDeviceClient, hashClientSecret, insertDevice, listDevices } from '../../src/store/devices.ts';
import { createOidcAdapter } from '../../src/store/oidc-adapter.ts';
import { loadOrCreateSecret } from '../../src/store/secrets.ts';
import { loadSigningKeys, rotateSigningKey, signingKeysFingerprint } from '../../src/store/signing-keys.ts';
import { findUser, insertUser, listUsers, setUserDisabled, setUserPassword } from '../../src/store/users.ts';
import { storeBackends, type TestStoreLocation } from '../support/store-backends.ts';

// 2100-01-01T00:00:00Z, past the 32-bit limit of January 2038.
const after2038 = 4_102_444_800;

for (const backend of storeBackends) {
  describe(`store on ${backend.name}`, () => {
    let target: TestStoreLocation;
    let store: Store;
    before(async () => {
      target = await backend.createLocation();
      store = await openStore(target.location);
    });
    after(async () => {
      await store?.destroy();
      await target?.remove();
    });

    describe('users', () => {
      test('insert then find', async () => {
        await insertUser(store, 'alice', 'hash-a');

        const user = await findUser(store, 'alice');
        assert.equal(user?.username, 'alice');
        assert.equal(user?.password_hash, 'hash-a');
        assert.equal(user?.disabled, 0);
        assert.equal(typeof user?.created_at, 'number');
        assert.ok(Math.abs((user?.created_at ?? 0) - epochSeconds()) <= 5);
      });

      test('duplicate username is rejected', async () => {
        await insertUser(store, 'duplicate', 'hash-1');
        await assert.rejects(insertUser(store, 'duplicate', 'hash-2'));
        assert.equal((await findUser(store, 'duplicate'))?.password_hash, 'hash-1');
      });

      test('usernames are case-sensitive', async () => {
        await insertUser(store, 'Carol', 'hash-c');
        assert.equal(await findUser(store, 'carol'), undefined);
        assert.equal((await findUser(store, 'Carol'))?.username, 'Carol');
      });

      test('disable, enable and password change', async () => {
        await insertUser(store, 'dave', 'old-hash');

        assert.equal(await setUserDisabled(store, 'dave', true), true);
        assert.equal((await findUser(store, 'dave'))?.disabled, 1);
        assert.equal(await setUserDisabled(store, 'dave', false), true);
        assert.equal((await findUser(store, 'dave'))?.disabled, 0);
        assert.equal(await setUserPassword(store, 'dave', 'new-hash'), true);
        assert.equal((await findUser(store, 'dave'))?.password_hash, 'new-hash');
      });

      test('changes to a missing user return false', async () => {
        assert.equal(await setUserDisabled(store, 'nobody', true), false);
        assert.equal(await setUserPassword(store, 'nobody', 'hash'), false);
      });

      test('list orders by creation then name', async () => {
        await store.insertInto('users').values([
          { username: 'list-b', password_hash: 'h', disabled: 0, created_at: 100 },
          { username: 'list-a', password_hash: 'h', disabled: 0, created_at: 100 },
          { username: 'list-0', password_hash: 'h', disabled: 0, created_at: 200 },
        ]).execute();

        const names = (await listUsers(store)).map((user) => user.username).filter((name) => name.startsWith('list-'));
        assert.deepEqual(names, ['list-a', 'list-b', 'list-0']);
      });
    });

    describe('devices', () => {
      test('secret device metadata carries the hash', async () => {
        await insertDevice(store, { client_id: 'meter-1', auth_method: 'client_secret_basic', secret_hash: hashClientSecret('s3cret'), jwks: null, owner: null });

        const client = await findDeviceClient(store, 'meter-1');
        assert.equal(client?.client_secret, hashClientSecret('s3cret'));
        assert.equal(client?.token_endpoint_auth_method, 'client_secret_basic');
        assert.equal((await findDevice(store, 'meter-1'))?.scopes, null);
      });

      test('secret comparison accepts only the secret', () => {
        const hash = hashClientSecret('right');
        assert.equal(clientSecretMatches(hash, 'right'), true);
        assert.equal(clientSecretMatches(hash, 'wrong'), false);
        assert.equal(clientSecretMatches(hash, ''), false);
      });

      test('key device metadata carries the JWK Set', async () => {
        const jwks = { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'abc', use: 'sig' }] };
        await insertDevice(store, { client_id: 'sensor-key', auth_method: 'private_key_jwt', secret_hash: null, jwks: JSON.stringify(jwks), owner: null });

        const client = await findDeviceClient(store, 'sensor-key');
        assert.deepEqual(client?.jwks, jwks);
        assert.equal(client?.client_secret, undefined);
        assert.equal(client?.token_endpoint_auth_method, 'private_key_jwt');
      });

      test('owner and scopes are kept', async () => {
        await insertUser(store, 'owner-1', 'hash');
        await insertDevice(store, { client_id: 'owned-b', auth_method: 'client_secret_basic', secret_hash: 'sha256:00', jwks: null, owner: 'owner-1', scopes: 'publish:devices/{client_id}/#' });
        await insertDevice(store, { client_id: 'owned-a', auth_method: 'client_secret_basic', secret_hash: 'sha256:00', jwks: null, owner: 'owner-1' });

        const device = await findDevice(store, 'owned-b');
        assert.equal(device?.owner, 'owner-1');
        assert.equal(device?.scopes, 'publish:devices/{client_id}/#');
        const scopes = await currentUserScopes(store, 'owner-1');
        assert.ok(scopes.indexOf('subscribe:devices/owned-a/#') < scopes.indexOf('subscribe:devices/owned-b/#'), scopes.join(' '));
        assert.ok(scopes.includes('subscribe:devices/owned-a/#'), scopes.join(' '));
      });

      test('list returns every device', async () => {
        const ids = (await listDevices(store)).map((device) => device.client_id);
        for (const id of ['meter-1', 'sensor-key', 'owned-a', 'owned-b']) {
          assert.ok(ids.includes(id), `${id} missing from ${ids.join(', ')}`);
        }
        assert.equal(typeof (await listDevices(store))[0].created_at, 'number');
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

    describe('signing keys', () => {
      test('first load creates one ES256 key', async () => {
        const [first, ...rest] = await loadSigningKeys(store);
        const [again] = await loadSigningKeys(store);

        assert.equal(rest.length, 0);
        assert.equal(first.alg, 'ES256');
        assert.equal(first.crv, 'P-256');
        assert.equal(typeof first.d, 'string');
        assert.equal(again.kid, first.kid);
      });

      test('rotation puts the new key first', async () => {
        const [before] = await loadSigningKeys(store);
        const fingerprint = await signingKeysFingerprint(store);

        const kid = await rotateSigningKey(store);
        const keys = await loadSigningKeys(store);
        assert.deepEqual(keys.map((key) => key.kid), [kid, before.kid]);
        assert.notEqual(await signingKeysFingerprint(store), fingerprint);

        const retired = await store.selectFrom('signing_keys').select(['status', 'retired_at']).where('kid', '=', before.kid!).executeTakeFirstOrThrow();
        assert.equal(retired.status, 'retired');
        assert.equal(typeof retired.retired_at, 'number');
      });

      test('retired key leaves after retention', async () => {
        const keys = await loadSigningKeys(store, 0);
        assert.equal(keys.length, 1);
        const rows = await store.selectFrom('signing_keys').select('status').execute();
        assert.deepEqual(rows.map((row) => row.status), ['active']);
      });
    });

    describe('secrets', () => {
      test('secret is created once', async () => {
        const first = await loadOrCreateSecret(store, 'test_key');
        const second = await loadOrCreateSecret(store, 'test_key');
        assert.equal(first, second);
        assert.equal(Buffer.from(first, 'base64url').length, 32);
      });

      test('concurrent first loads agree', async () => {
        const other = await openStore(target.location);
        try {
          const values = await Promise.all(Array.from({ length: 10 }, (_, index) => loadOrCreateSecret(index % 2 === 0 ? store : other, 'raced_key')));
          assert.equal(new Set(values).size, 1);
        } finally {
          await other.destroy();
        }
      });
    });

    describe('browser sessions', () => {
      test('upsert replaces the refresh token', async () => {
        await upsertBrowserSession(store, { grant_id: 'bs-1', username: 'alice', refresh_token: 'rt-1', expires_at: epochSeconds() + 60 });
        const created = await findBrowserSession(store, 'bs-1');
        await upsertBrowserSession(store, { grant_id: 'bs-1', username: 'alice', refresh_token: 'rt-2', expires_at: after2038 });

        const replaced = await findBrowserSession(store, 'bs-1');
        assert.equal(replaced?.refresh_token, 'rt-2');
        assert.equal(replaced?.expires_at, after2038);
        assert.equal(replaced?.created_at, created?.created_at);
      });

      test('delete removes only that grant', async () => {
        await upsertBrowserSession(store, { grant_id: 'bs-2', username: 'alice', refresh_token: 'rt', expires_at: epochSeconds() + 60 });
        await deleteBrowserSession(store, 'bs-2');

        assert.equal(await findBrowserSession(store, 'bs-2'), undefined);
        assert.ok(await findBrowserSession(store, 'bs-1'));
      });

      test('prune removes expired sessions', async () => {
        await upsertBrowserSession(store, { grant_id: 'bs-old', username: 'alice', refresh_token: 'rt', expires_at: epochSeconds() - 1 });

        assert.equal(await pruneBrowserSessions(store), 1);
        assert.equal(await findBrowserSession(store, 'bs-old'), undefined);
        assert.ok(await findBrowserSession(store, 'bs-1'));
      });
    });
  });
}
