// Store contract, part four: opening and migrating, run against every backend in `storeBackends`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, describe, test } from 'node:test';

import { openStore, type Store, type StoreLocation } from '../../src/store/database.ts';
import { createMigrations } from '../../src/store/migrations.ts';
import { findUser, insertUser, listUsers } from '../../src/store/users.ts';
import { createTestSchema } from '../support/postgres.ts';
import { repositoryRoot } from '../support/server.ts';
import { storeBackends, type TestStoreLocation } from '../support/store-backends.ts';

const childScript = path.join(repositoryRoot, 'test/support/open-store-child.ts');
const migrationNames = Object.keys(createMigrations('sqlite'));

async function appliedMigrations(store: Store): Promise<{ name: string; timestamp: string }[]> {
  return store.withTables<{ kysely_migration: { name: string; timestamp: string } }>()
    .selectFrom('kysely_migration').select(['name', 'timestamp']).orderBy('name').execute();
}

/**
 * Starts one child process per username, releases them together once all have loaded, and returns
 * what each printed. Children still running after `limitMs` are killed, so a hang fails the test.
 */
async function openConcurrently(location: StoreLocation, usernames: string[], limitMs = 60_000): Promise<string[]> {
  const children = usernames.map((username) => spawn(process.execPath, ['--import', 'tsx', childScript, JSON.stringify(location), username], {
    cwd: repositoryRoot,
    stdio: ['pipe', 'pipe', 'inherit'],
  }));
  const killer = setTimeout(() => children.forEach((child) => child.kill()), limitMs);
  try {
    const lines = children.map((child) => readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]());
    const firstLines = await Promise.all(lines.map((line) => line.next()));
    assert.deepEqual(firstLines.map((line) => line.value), usernames.map(() => 'ready'));

    children.forEach((child) => child.stdin.end('go\n'));
    const results = await Promise.all(lines.map((line) => line.next()));
    return results.map((result) => String(result.value ?? 'exited without output'));
  } finally {
    clearTimeout(killer);
  }
}

for (const backend of storeBackends) {
  describe(`migrations on ${backend.name}`, () => {
    let target: TestStoreLocation;
    before(async () => {
      target = await backend.createLocation();
    });
    after(async () => {
      await target?.remove();
    });

    test('processes opening a new database together', async () => {
      const usernames = ['node-a', 'node-b', 'node-c'];
      const outputs = await openConcurrently(target.location, usernames);
      assert.deepEqual(outputs, ['ok', 'ok', 'ok']);

      const store = await openStore(target.location);
      try {
        const names = (await listUsers(store)).map((user) => user.username).sort();
        assert.deepEqual(names, usernames);
        assert.deepEqual((await appliedMigrations(store)).map((row) => row.name), migrationNames);
      } finally {
        await store.destroy();
      }
    });

    test('opening again changes nothing', async () => {
      const first = await openStore(target.location);
      const before = await appliedMigrations(first);
      await insertUser(first, 'kept', 'hash');
      await first.destroy();

      const second = await openStore(target.location);
      try {
        assert.deepEqual(await appliedMigrations(second), before);
        assert.equal((await findUser(second, 'kept'))?.password_hash, 'hash');
      } finally {
        await second.destroy();
      }
    });

    test('stores opened together both work', async () => {
      // While a SQLite store migrates a new file, it holds the write lock. A second store in the
      // same process would wait for that lock synchronously and block the event loop that has to
      // release it. So SQLite stores open one after the other here, and the test above covers
      // parallel processes.
      const stores = backend.name === 'SQLite'
        ? [await openStore(target.location), await openStore(target.location)]
        : await Promise.all([openStore(target.location), openStore(target.location)]);
      try {
        await insertUser(stores[0], 'from-first', 'hash-1');
        await insertUser(stores[1], 'from-second', 'hash-2');
        assert.equal((await findUser(stores[1], 'from-first'))?.password_hash, 'hash-1');
        assert.equal((await findUser(stores[0], 'from-second'))?.password_hash, 'hash-2');
      } finally {
        await Promise.all(stores.map((store) => store.destroy()));
      }
    });

    // Only PostgreSQL has schemas; kysely's introspection lists the tables of all of them.
    if (backend.name === 'PostgreSQL') {
      test('schema with another migrated schema beside it', async () => {
        const neighbour = await createTestSchema();
        try {
          const store = await openStore({ dataDir: target.location.dataDir, databaseUrl: neighbour.url });
          try {
            assert.deepEqual((await appliedMigrations(store)).map((row) => row.name), migrationNames);
            assert.equal(await findUser(store, 'node-a'), undefined);
          } finally {
            await store.destroy();
          }
        } finally {
          await neighbour.drop();
        }
      });
    }
  });
}
