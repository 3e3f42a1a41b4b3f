// Store contract, part three: deny-lists and revocation events, run against every backend in
// `storeBackends`.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { epochSeconds, openStore } from '../../src/store/database.ts';
import { createOidcAdapter } from '../../src/store/oidc-adapter.ts';
import { isTokenRevoked, latestRevocationEventId, pruneRevocationEvents, readRevocationEvents, recordRevocation, tokenKey } from '../../src/store/revocation-events.ts';
import { insertRevokedGrant, isGrantRevoked, pruneRevokedGrants } from '../../src/store/revocations.ts';
import { upsertBrowserSession, findBrowserSession } from '../../src/store/browser-sessions.ts';
import { revokeGrantsOfUser } from '../../src/store/user-grants.ts';
import { storeBackends, useFreshStore } from '../support/store-backends.ts';

/** Polls `condition` every 20 ms until it holds; fails after `limitMs` so that a bug cannot hang the run. */
async function waitFor(description: string, condition: () => Promise<boolean>, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!await condition()) {
    if (Date.now() > deadline) {
      assert.fail(`gave up waiting: ${description}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

for (const backend of storeBackends) {
  describe(`revocations on ${backend.name}`, () => {
    const opened = useFreshStore(backend);

    test('grant deny-list lasts until expiry', async () => {
      await insertRevokedGrant(opened.store, 'g-live', epochSeconds() + 600);
      await insertRevokedGrant(opened.store, 'g-old', epochSeconds() - 1);

      assert.equal(await isGrantRevoked(opened.store, 'g-live'), true);
      assert.equal(await isGrantRevoked(opened.store, 'g-old'), false);
      assert.equal(await isGrantRevoked(opened.store, 'g-never'), false);
      assert.equal(await pruneRevokedGrants(opened.store), 1);
      assert.equal(await isGrantRevoked(opened.store, 'g-live'), true);
    });

    test('second revocation keeps later expiry', async () => {
      const later = epochSeconds() + 900;
      await insertRevokedGrant(opened.store, 'g-twice', later);
      await insertRevokedGrant(opened.store, 'g-twice', epochSeconds() + 10);
      const kept = await opened.store.selectFrom('revoked_grants').select('expires_at').where('grant_id', '=', 'g-twice').executeTakeFirstOrThrow();
      assert.equal(kept.expires_at, later);

      await insertRevokedGrant(opened.store, 'g-twice', later + 100);
      const extended = await opened.store.selectFrom('revoked_grants').select('expires_at').where('grant_id', '=', 'g-twice').executeTakeFirstOrThrow();
      assert.equal(extended.expires_at, later + 100);
    });

    test('grant revocation writes deny-list and event', async () => {
      const before = await latestRevocationEventId(opened.store);
      await recordRevocation(opened.store, { kind: 'grant', value: 'g-event', reason: 'operator', expiresAt: epochSeconds() + 60 });

      assert.equal(await isGrantRevoked(opened.store, 'g-event'), true);
      const events = await readRevocationEvents(opened.store, before);
      assert.deepEqual(events.map(({ kind, value, reason }) => ({ kind, value, reason })), [{ kind: 'grant', value: 'g-event', reason: 'operator' }]);
      assert.equal(typeof events[0].id, 'number');
      assert.equal(await latestRevocationEventId(opened.store), events[0].id);
    });

    test('token revocation is keyed by issuer and jti', async () => {
      const iss = 'https://issuer.example';
      await recordRevocation(opened.store, { kind: 'token', value: tokenKey(iss, 'jti-1'), reason: 'operator', expiresAt: epochSeconds() + 60 });
      await recordRevocation(opened.store, { kind: 'token', value: tokenKey(iss, 'jti-1'), reason: 'operator', expiresAt: epochSeconds() + 60 });

      assert.equal(await isTokenRevoked(opened.store, iss, 'jti-1'), true);
      assert.equal(await isTokenRevoked(opened.store, 'https://other.example', 'jti-1'), false);
      assert.equal(await isTokenRevoked(opened.store, iss, 'jti-2'), false);
    });

    test('events read in id order after a given id', async () => {
      const start = await latestRevocationEventId(opened.store);
      for (const value of ['c-1', 'c-2', 'c-3']) {
        await recordRevocation(opened.store, { kind: 'client', value, reason: 'device_removed', expiresAt: epochSeconds() });
      }

      const all = await readRevocationEvents(opened.store, start);
      assert.deepEqual(all.map((event) => event.value), ['c-1', 'c-2', 'c-3']);
      assert.ok(all[0].id < all[1].id);
      assert.ok(all[1].id < all[2].id);
      const limited = await readRevocationEvents(opened.store, all[0].id, 1);
      assert.deepEqual(limited.map((event) => event.value), ['c-2']);
      assert.deepEqual(await readRevocationEvents(opened.store, all[2].id), []);
    });

    test('concurrent revocations all arrive in order', async () => {
      // A SQLite process keeps one connection. A second one in this process would wait for the
      // first one's write lock synchronously, blocking the event loop that has to release it.
      const other = backend.name === 'SQLite' ? opened.store : await openStore(opened.target.location);
      try {
        const start = await latestRevocationEventId(opened.store);
        const values = Array.from({ length: 20 }, (_, index) => `u-${index}`);
        await Promise.all(values.map((value, index) => recordRevocation(index % 2 === 0 ? opened.store : other, { kind: 'user', value, reason: 'user_disabled', expiresAt: epochSeconds() })));

        const events = await readRevocationEvents(opened.store, start);
        assert.deepEqual(events.map((event) => event.value).sort(), [...values].sort());
        const ids = events.map((event) => event.id);
        assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
        assert.equal(new Set(ids).size, 20);
      } finally {
        if (other !== opened.store) {
          await other.destroy();
        }
      }
    });

    test('prune removes old events and expired tokens', async () => {
      await recordRevocation(opened.store, { kind: 'token', value: tokenKey('https://issuer.example', 'jti-old'), reason: 'operator', expiresAt: epochSeconds() - 1 });
      const start = await latestRevocationEventId(opened.store);
      await recordRevocation(opened.store, { kind: 'user', value: 'recent', reason: 'user_disabled', expiresAt: epochSeconds() });
      await opened.store.updateTable('revocation_events').set({ created_at: epochSeconds() - 7200 }).where('id', '<=', start).execute();

      const removed = await pruneRevocationEvents(opened.store, 3600);
      const left = await readRevocationEvents(opened.store, 0);
      assert.deepEqual(left.map((event) => event.value), ['recent']);
      assert.ok(removed >= start + 1, `removed ${removed}`);
      const expiredToken = await opened.store.selectFrom('revoked_tokens').select('jti').where('jti', '=', 'jti-old').executeTakeFirst();
      assert.equal(expiredToken, undefined);
      assert.equal(await isTokenRevoked(opened.store, 'https://issuer.example', 'jti-1'), true);
      assert.equal(await latestRevocationEventId(opened.store), left[0].id);
    });

    test('revoking a user ends grants and sessions', async () => {
      const Adapter = createOidcAdapter(opened.store);
      await new Adapter('Grant').upsert('g-user-1', { accountId: 'erin', clientId: 'meter' }, 600);
      await new Adapter('RefreshToken').upsert('rt-user-1', { grantId: 'g-user-1', accountId: 'erin' }, 600);
      await new Adapter('Grant').upsert('g-other', { accountId: 'frank' }, 600);
      await upsertBrowserSession(opened.store, { grant_id: 'g-user-2', username: 'erin', refresh_token: 'rt', expires_at: epochSeconds() + 600 });

      assert.equal(await revokeGrantsOfUser(opened.store, 'erin', 'password_changed'), 2);

      assert.equal(await isGrantRevoked(opened.store, 'g-user-1'), true);
      assert.equal(await isGrantRevoked(opened.store, 'g-user-2'), true);
      assert.equal(await new Adapter('RefreshToken').find('rt-user-1'), undefined);
      assert.equal(await new Adapter('Grant').find('g-user-1'), undefined);
      assert.equal(await findBrowserSession(opened.store, 'g-user-2'), undefined);
      assert.ok(await new Adapter('Grant').find('g-other'));
    });

    // SQLite has one writer at a time, so this ordering can only break on PostgreSQL.
    if (backend.name === 'PostgreSQL') {
      test('event waits for an earlier open transaction', async () => {
        const client = new pg.Client({ connectionString: opened.target.location.databaseUrl! });
        await client.connect();
        try {
          const start = await latestRevocationEventId(opened.store);
          await client.query('begin');
          await client.query(`insert into revocation_events (kind, value, reason, created_at) values ('user', 'earlier', 'test', ${epochSeconds()})`);

          const recording = recordRevocation(opened.store, { kind: 'user', value: 'later', reason: 'test', expiresAt: epochSeconds() });
          await waitFor('recordRevocation to wait for the open transaction', async () => {
            const { rows } = await client.query<{ waiting: string }>(`select count(*) as waiting from pg_locks where relation = 'revocation_events'::regclass and not granted`);
            return Number(rows[0].waiting) > 0;
          });
          assert.deepEqual(await readRevocationEvents(opened.store, start), []);

          await client.query('commit');
          await recording;
          const events = await readRevocationEvents(opened.store, start);
          assert.deepEqual(events.map((event) => event.value), ['earlier', 'later']);
        } finally {
          await client.end();
        }
      });
    }
  });
}
