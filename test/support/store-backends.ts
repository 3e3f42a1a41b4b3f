import fs from 'node:fs';
import { after, before } from 'node:test';

import { openStore, type Store, type StoreLocation } from '../../src/store/database.ts';
import { createTestSchema } from './postgres.ts';
import { temporaryDataDir } from './server.ts';

/** An empty database that one test file owns. */
export interface TestStoreLocation {
  location: StoreLocation;
  /** Deletes the database and the data directory. */
  remove(): Promise<void>;
}

/** A database backend that the store contract suite runs against. */
export interface StoreBackend {
  name: 'SQLite' | 'PostgreSQL';
  createLocation(): Promise<TestStoreLocation>;
}

/** Every backend the store supports: the contract suite runs each case once per entry. */
export const storeBackends: readonly StoreBackend[] = [
  {
    name: 'SQLite',
    async createLocation() {
      const dataDir = temporaryDataDir();
      return {
        location: { dataDir, databaseUrl: null },
        remove: async () => fs.rmSync(dataDir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'PostgreSQL',
    async createLocation() {
      const schema = await createTestSchema();
      const dataDir = temporaryDataDir();
      return {
        location: { dataDir, databaseUrl: schema.url },
        remove: async () => {
          await schema.drop();
          fs.rmSync(dataDir, { recursive: true, force: true });
        },
      };
    },
  },
];

/** The store one describe block opens on a fresh database, and where that database is. */
export interface OpenedStore {
  store: Store;
  target: TestStoreLocation;
}

/**
 * Registers hooks on the enclosing describe block that open a store on a fresh database of `backend`
 * before its tests and drop both afterwards. The returned object is filled in by the time tests run.
 */
export function useFreshStore(backend: StoreBackend): OpenedStore {
  const opened = {} as OpenedStore;
  before(async () => {
    opened.target = await backend.createLocation();
    opened.store = await openStore(opened.target.location);
  });
  after(async () => {
    await opened.store?.destroy();
    await opened.target?.remove();
  });
  return opened;
}
