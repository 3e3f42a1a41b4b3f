import crypto from 'node:crypto';

import pg from 'pg';

/**
 * The PostgreSQL database that tests create their schemas in. `PORTCULLIS_TEST_DATABASE_URL`
 * overrides the default, the local server with trust authentication that CI also runs.
 */
export const testDatabaseUrl = process.env.PORTCULLIS_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** An empty schema that only one test file uses. */
export interface TestSchema {
  name: string;
  /** `testDatabaseUrl` with a `search_path` that selects the schema, for `--database-url`. */
  url: string;
  /** Drops the schema and everything in it. */
  drop(): Promise<void>;
}

/** Runs one statement on a connection of its own, so that no pool outlives the test. */
export async function runOnTestDatabase(statement: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: testDatabaseUrl });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(`The tests need PostgreSQL (${(error as Error).message}). Start it, or point PORTCULLIS_TEST_DATABASE_URL at a database where the user may create schemas.`, { cause: error });
  }
  try {
    return await client.query(statement);
  } finally {
    await client.end();
  }
}

/**
 * Creates a schema with a random name, so that test files running in parallel on one database
 * never see each other's tables.
 */
export async function createTestSchema(): Promise<TestSchema> {
  const name = `portcullis_test_${crypto.randomBytes(8).toString('hex')}`;
  await runOnTestDatabase(`create schema ${name}`);

  const url = new URL(testDatabaseUrl);
  url.searchParams.set('options', `-c search_path=${name}`);
  return {
    name,
    url: url.href,
    drop: async () => {
      await runOnTestDatabase(`drop schema if exists ${name} cascade`);
    },
  };
}
