import { Kysely, PostgresAdapter, PostgresDialect, sql } from 'kysely';
import pg from 'pg';

import { PortcullisError } from '../errors.ts';
import { detectOutages, type PostgresOutageEvents } from './postgres-outage.ts';
import type { Database } from './schema.ts';

/**
 * Maximum number of connections that one process opens to PostgreSQL. Connections open on demand,
 * so a management command uses a few.
 */
// NOTE: this is pg's default, not a size derived from a load test of the server.
export const postgresPoolSize = 10;

/** Milliseconds to wait for a new connection, or for a free one, before a query fails. */
const connectTimeoutMs = 10_000;

/** Milliseconds after which an unused connection is closed. */
const idleTimeoutMs = 10_000;

const int8Oid = pg.types.builtins.INT8;

// pg returns BIGINT as a string because it may exceed 2^53. Every BIGINT column here contains epoch
// seconds or an event id, so it is read as a number. A value that a number cannot represent exactly
// fails the query instead of being rounded.
function parseInt8(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) {
    throw new RangeError('A BIGINT value is larger than 2^53 - 1 and cannot be read as a number.');
  }
  return value;
}

// Passed to each connection instead of changing pg's global parsers, which other code may rely on.
const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) => {
    if (oid === int8Oid && format !== 'binary') {
      return parseInt8;
    }
    return pg.types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** Describes a PostgreSQL URL as host, port and database, without the user name or password. */
export function describePostgresUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  return `${url.hostname || 'the default host'}:${url.port || '5432'}${url.pathname}`;
}

/** Hooks that report connection trouble of the pool. */
export interface PostgresPoolEvents extends PostgresOutageEvents {
  /** Receives the error of an idle connection (a restarted server, a dropped network), which pg then replaces. */
  onPoolError(error: Error): void;
}

/**
 * Creates a kysely instance over a pg pool. Connections open on first use. While the server cannot
 * be reached, queries reject with `PortcullisError('temporarily_unavailable')` (see `detectOutages`).
 */
export function createPostgresDatabase(databaseUrl: string, events: PostgresPoolEvents): Kysely<Database> {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    // Shown in pg_stat_activity; an `application_name` in the URL takes precedence.
    application_name: 'portcullis',
    max: postgresPoolSize,
    connectionTimeoutMillis: connectTimeoutMs,
    idleTimeoutMillis: idleTimeoutMs,
    types: typeParsers,
  });
  // Without a listener, an error on an idle connection would be an uncaught 'error' event.
  pool.on('error', (error) => events.onPoolError(error));
  // pg-pool removes its own error listener from a client while the client is checked out, and pg emits
  // 'error' on the client when the server ends the connection, even during a query that fails
  // with the same error. Without a listener of its own, that event would crash the process.
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool: detectOutages(pool, events) }) });
}

/**
 * Returns the schema that unqualified table names resolve to, the first existing one on the
 * connection's `search_path`. This first query also checks that the server can be reached.
 */
export async function currentSchema(db: Kysely<Database>, databaseUrl: string): Promise<string> {
  let schema: string | null;
  try {
    const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db);
    schema = rows[0]?.schema ?? null;
  } catch (error) {
    // An unreachable server arrives as temporarily_unavailable, whose message is the public text.
    const reason = error instanceof PortcullisError && error.cause instanceof Error ? error.cause : error as Error;
    // pg's messages name the host, user or database at most, never the password.
    throw new Error(`Connecting to PostgreSQL at ${describePostgresUrl(databaseUrl)} failed: ${reason.message}. Check --database-url and that the server accepts connections.`, { cause: error });
  }

  if (schema === null) {
    throw new Error(`PostgreSQL at ${describePostgresUrl(databaseUrl)} has no schema on the search_path; create the schema, or name an existing one with "options=-c search_path=NAME" in --database-url.`);
  }
  return schema;
}

/** Tells whether a store or transaction runs on PostgreSQL rather than SQLite. */
export function isPostgres(db: Kysely<any>): boolean {
  // NOTE: kysely 0.28 marks getExecutor() as internal. It is used because it is the only way to
  // reach the adapter from a transaction.
  return db.getExecutor().adapter instanceof PostgresAdapter;
}
