// Store contract, part one: users, devices, signing keys, secrets and browser sessions, run
// against every backend in `storeBackends`.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { currentUserScopes } from '../../src/auth/channel-scopes.ts';
import { deleteBrowserSession, findBrowserSession, pruneBrowserSessions, upsertBrowserSession } from '../../src/store/browser-sessions.ts';
import { epochSeconds, openStore } from '../../src/store/database.ts';
import { clientSecretMatches, deleteDevice, findDevice, findDeviceClient, hashClientSecret, insertDevice, listDevices } from '../../src/store/devices.ts';
import { createOidcAdapter } from '../../src/store/oidc-adapter.ts';
import { loadOrCreateSecret } from '../../src/store/secrets.ts';
import { loadSigningKeys, rotateSigningKey, signingKeysFingerprint } from '../../src/store/signing-keys.ts';
import { findUser, insertUser, listUsers, setUserDisabled, setUserPassword } from '../../src/store/users.ts';
import { storeBackends, useFreshStore } from '../support/store-backends.ts';

// 2100-01-01T00:00:00Z, past the 32-bit limit of January 2038.
const after2038 = 4_102_444_800;

for (const backend of storeBackends) {
  describe(`store on ${backend.name}`, () => {
    const opened = useFreshStore(backend);

    describe('users', () => {
      test('insert then find', async () => {
        await insertUser(opened.store, 'alice', 'hash-a');

        const user = await findUser(opened.store, 'alice');
        assert.equal(user?.username, 'alice');
        assert.equal(user?.password_hash, 'hash-a');
        assert.equal(user?.disabled, 0);
        assert.equal(typeof user?.created_at, 'number');
        assert.ok(Math.abs((user?.created_at ?? 0) - epochSeconds()) <= 5);
      });

      test('duplicate username is rejected', async () => {
        await insertUser(opened.store, 'duplicate', 'hash-1');
        await assert.rejects(insertUser(opened.store, 'duplicate', 'hash-2'));
        assert.equal((await findUser(opened.store, 'duplicate'))?.password_hash, 'hash-1');
      });

      test('usernames are case-sensitive', async () => {
        await insertUser(opened.store, 'Carol', 'hash-c');
        assert.equal(await findUser(opened.store, 'carol'), undefined);
        assert.equal((await findUser(opened.store, 'Carol'))?.username, 'Carol');
      });

      test('disable, enable and password change', async () => {
        await insertUser(opened.store, 'dave', 'old-hash');

        assert.equal(await setUserDisabled(opened.store, 'dave', true), true);
        assert.equal((await findUser(opened.store, 'dave'))?.disabled, 1);
        assert.equal(await setUserDisabled(opened.store, 'dave', false), true);
        assert.equal((await findUser(opened.store, 'dave'))?.disabled, 0);
        assert.equal(await setUserPassword(opened.store, 'dave', 'new-hash'), true);
        assert.equal((await findUser(opened.store, 'dave'))?.password_hash, 'new-hash');
      });

      test('changes to a missing user return false', async () => {
        assert.equal(await setUserDisabled(opened.store, 'nobody', true), false);
        assert.equal(await setUserPassword(opened.store, 'nobody', 'hash'), false);
      });

      test('list orders by creation then name', async () => {
        await opened.store.insertInto('users').values([
          { username: 'list-b', password_hash: 'h', disabled: 0, created_at: 100 },
          { username: 'list-a', password_hash: 'h', disabled: 0, created_at: 100 },
          { username: 'list-0', password_hash: 'h', disabled: 0, created_at: 200 },
        ]).execute();

        const names = (await listUsers(opened.store)).map((user) => user.username).filter((name) => name.startsWith('list-'));
        assert.deepEqual(names, ['list-a', 'list-b', 'list-0']);
      });
    });

    describe('devices', () => {
      test('secret device metadata carries the hash', async () => {
        await insertDevice(opened.store, { client_id: 'meter-1', auth_method: 'client_secret_basic', secret_hash: hashClientSecret('s3cret'), jwks: null, owner: null });

        const client = await findDeviceClient(opened.store, 'meter-1');
        assert.equal(client?.client_secret, hashClientSecret('s3cret'));
        assert.equal(client?.token_endpoint_auth_method, 'client_secret_basic');
        assert.equal((await findDevice(opened.store, 'meter-1'))?.scopes, null);
      });

      test('secret comparison accepts only the secret', () => {
        const hash = hashClientSecret('right');
        assert.equal(clientSecretMatches(hash, 'right'), true);
        assert.equal(clientSecretMatches(hash, 'wrong'), false);
        assert.equal(clientSecretMatches(hash, ''), false);
      });

      test('key device metadata carries the JWK Set', async () => {
        const jwks = { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'abc', use: 'sig' }] };
        await insertDevice(opened.store, { client_id: 'sensor-key', auth_method: 'private_key_jwt', secret_hash: null, jwks: JSON.stringify(jwks), owner: null });

        const client = await findDeviceClient(opened.store, 'sensor-key');
        assert.deepEqual(client?.jwks, jwks);
        assert.equal(client?.client_secret, undefined);
        assert.equal(client?.token_endpoint_auth_method, 'private_key_jwt');
      });

      test('owner and scopes are kept', async () => {
        await insertUser(opened.store, 'owner-1', 'hash');
        await insertDevice(opened.store, { client_id: 'owned-b', auth_method: 'client_secret_basic', secret_hash: 'sha256:00', jwks: null, owner: 'owner-1', scopes: 'publish:devices/{client_id}/#' });
        await insertDevice(opened.store, { client_id: 'owned-a', auth_method: 'client_secret_basic', secret_hash: 'sha256:00', jwks: null, owner: 'owner-1' });

        const device = await findDevice(opened.store, 'owned-b');
        assert.equal(device?.owner, 'owner-1');
        assert.equal(device?.scopes, 'publish:devices/{client_id}/#');
        const scopes = await currentUserScopes(opened.store, 'owner-1');
        assert.ok(scopes.indexOf('subscribe:devices/owned-a/#') < scopes.indexOf('subscribe:devices/owned-b/#'), scopes.join(' '));
        assert.ok(scopes.includes('subscribe:devices/owned-a/#'), scopes.join(' '));
      });

      test('list returns every device', async () => {
        const ids = (await listDevices(opened.store)).map((device) => device.client_id);
        for (const id of ['meter-1', 'sensor-key', 'owned-a', 'owned-b']) {
          assert.ok(ids.includes(id), `${id} missing from ${ids.join(', ')}`);
        }
        assert.equal(typeof (await listDevices(opened.store))[0].created_at, 'number');
      });

      test('removing a device deletes its artefacts', async () => {
        await insertDevice(opened.store, { client_id: 'meter-2', auth_method: 'client_secret_basic', secret_hash: hashClientSecret('x'), jwks: null, owner: null });
        const Adapter = createOidcAdapter(opened.store);
        await new Adapter('RefreshToken').upsert('rt-meter-2', { clientId: 'meter-2', grantId: 'g-m2' }, 60);
        await new Adapter('RefreshToken').upsert('rt-other', { clientId: 'meter-1', grantId: 'g-m1' }, 60);

        assert.equal(await deleteDevice(opened.store, 'meter-2'), true);
        assert.equal(await findDeviceClient(opened.store, 'meter-2'), undefined);
        assert.equal(await new Adapter('RefreshToken').find('rt-meter-2'), undefined);
        assert.ok(await new Adapter('RefreshToken').find('rt-other'));
        assert.equal(await deleteDevice(opened.store, 'meter-2'), false);
      });
    });

    describe('signing keys', () => {
      test('first load creates one ES256 key', async () => {
        const [first, ...rest] = await loadSigningKeys(opened.store);
        const [again] = await loadSigningKeys(opened.store);

        assert.equal(rest.length, 0);
        assert.equal(first.alg, 'ES256');
        assert.equal(first.crv, 'P-256');
        assert.equal(typeof first.d, 'string');
        assert.equal(again.kid, first.kid);
      });

      test('rotation puts the new key first', async () => {
        const [before] = await loadSigningKeys(opened.store);
        const fingerprint = await signingKeysFingerprint(opened.store);

        const kid = await rotateSigningKey(opened.store);
        const keys = await loadSigningKeys(opened.store);
        assert.deepEqual(keys.map((key) => key.kid), [kid, before.kid]);
        assert.notEqual(await signingKeysFingerprint(opened.store), fingerprint);

        const retired = await opened.store.selectFrom('signing_keys').select(['status', 'retired_at']).where('kid', '=', before.kid!).executeTakeFirstOrThrow();
        assert.equal(retired.status, 'retired');
        assert.equal(typeof retired.retired_at, 'number');
      });

      test('retired key leaves after retention', async () => {
        const keys = await loadSigningKeys(opened.store, 0);
        assert.equal(keys.length, 1);
        const rows = await opened.store.selectFrom('signing_keys').select('status').execute();
        assert.deepEqual(rows.map((row) => row.status), ['active']);
      });
    });

    describe('secrets', () => {
      test('secret is created once', async () => {
        const first = await loadOrCreateSecret(opened.store, 'test_key');
        const second = await loadOrCreateSecret(opened.store, 'test_key');
        assert.equal(first, second);
        assert.equal(Buffer.from(first, 'base64url').length, 32);
      });

      test('concurrent first loads agree', async () => {
        const other = await openStore(opened.target.location);
        try {
          const values = await Promise.all(Array.from({ length: 10 }, (_, index) => loadOrCreateSecret(index % 2 === 0 ? opened.store : other, 'raced_key')));
          assert.equal(new Set(values).size, 1);
        } finally {
          await other.destroy();
        }
      });
    });

    describe('browser sessions', () => {
      test('upsert replaces the refresh token', async () => {
        await upsertBrowserSession(opened.store, { grant_id: 'bs-1', username: 'alice', refresh_token: 'rt-1', expires_at: epochSeconds() + 60 });
        const created = await findBrowserSession(opened.store, 'bs-1');
        await upsertBrowserSession(opened.store, { grant_id: 'bs-1', username: 'alice', refresh_token: 'rt-2', expires_at: after2038 });

        const replaced = await findBrowserSession(opened.store, 'bs-1');
        assert.equal(replaced?.refresh_token, 'rt-2');
        assert.equal(replaced?.expires_at, after2038);
        assert.equal(replaced?.created_at, created?.created_at);
      });

      test('delete removes only that grant', async () => {
        await upsertBrowserSession(opened.store, { grant_id: 'bs-2', username: 'alice', refresh_token: 'rt', expires_at: epochSeconds() + 60 });
        await deleteBrowserSession(opened.store, 'bs-2');

        assert.equal(await findBrowserSession(opened.store, 'bs-2'), undefined);
        assert.ok(await findBrowserSession(opened.store, 'bs-1'));
      });

      test('prune removes expired sessions', async () => {
        await upsertBrowserSession(opened.store, { grant_id: 'bs-old', username: 'alice', refresh_token: 'rt', expires_at: epochSeconds() - 1 });

        assert.equal(await pruneBrowserSessions(opened.store), 1);
        assert.equal(await findBrowserSession(opened.store, 'bs-old'), undefined);
        assert.ok(await findBrowserSession(opened.store, 'bs-1'));
      });
    });
  });
}
