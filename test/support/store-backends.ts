import fs from 'node:fs';

import type { StoreLocation } from '../../src/store/database.ts';
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
