import fs from 'node:fs';
import path from 'node:path';

import SQLite from 'better-sqlite3';
import { DEFAULT_MIGRATION_TABLE, Kysely, Migrator, SqliteDialect } from 'kysely';
import type { Logger } from 'pino';

import type { Options } from '../config/options.ts';
import { createMigrations, type DialectName } from './migrations.ts';
import { createPostgresDatabase, currentSchema, type PostgresPoolEvents } from './postgres.ts';
import type { Database } from './schema.ts';
import { withStatementCache } from './sqlite-statements.ts';

/** The Portcullis database handle; `destroy()` closes the file or the connection pool. */
export type Store = Kysely<Database>;

/** The database's location: `<dataDir>/portcullis.db`, or PostgreSQL when `databaseUrl` is set. */
export type StoreLocation = Pick<Options, 'dataDir' | 'databaseUrl'>;

/**
 * Opens the database and applies pending migrations. Without `databaseUrl` it opens (creating if
 * needed) `<dataDir>/portcullis.db` in WAL mode; with it, a pool of connections to PostgreSQL.
 * Either way it creates `dataDir`, which also contains TLS material and the admin socket. Several
 * processes may open one database at once: servers and management commands share it. `logger`
 * receives errors of idle PostgreSQL connections, which without it go to standard error, and the
 * start and end of each time PostgreSQL cannot be reached.
 */
export async function openStore(location: StoreLocation, logger?: Logger): Promise<Store> {
  fs.mkdirSync(location.dataDir, { recursive: true, mode: 0o700 });
  const { databaseUrl } = location;
  if (databaseUrl === null) {
    return openSqlite(location.dataDir);
  }

  const db = createPostgresDatabase(databaseUrl, poolEvents(logger));
  let schema: string;
  try {
    schema = await currentSchema(db, databaseUrl);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  // kysely's introspection lists the tables of every schema, so another schema's migration table
  // would count as this one's. The migrator therefore gets the schema that these connections use.
  return migrate(db, 'postgres', schema);
}

// A management command has no logger, and it reports a failed query through its own error output.
function poolEvents(logger: Logger | undefined): PostgresPoolEvents {
  if (!logger) {
    return {
      onPoolError: (error) => process.stderr.write(`portcullis: an idle PostgreSQL connection failed (${error.message}), and the pool replaces it.\n`),
      onUnavailable: () => {},
      onRestored: () => {},
    };
  }

  return {
    onPoolError: (error) => logger.error({ event: 'store.connection_failed', err: error }, 'an idle PostgreSQL connection failed, and the pool replaces it'),
    onUnavailable: (error) => logger.error({ event: 'store.unavailable', err: error }, 'PostgreSQL cannot be reached, so requests that need the database get 503 temporarily_unavailable until it responds again'),
    onRestored: (unavailableMs) => logger.info({ event: 'store.restored', unavailable_ms: unavailableMs }, 'PostgreSQL responds again'),
  };
}

async function openSqlite(dataDir: string): Promise<Store> {
  const file = path.join(dataDir, 'portcullis.db');
  const sqlite = new SQLite(file);
  sqlite.pragma('journal_mode = WAL');
  // Management commands write while the server runs; wait for the lock instead of failing at once.
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  fs.chmodSync(file, 0o600);
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });

  // kysely's migrator takes no lock on SQLite, so processes that open a new file together would
  // each create the tables. The write lock makes the others wait (up to busy_timeout) and then
  // find the migrations applied. It is taken only when a migration is pending, because a second
  // connection in this process waiting for it would block the event loop that has to release it.
  const exclusive = hasPendingMigrations(sqlite);
  if (exclusive) {
    try {
      sqlite.exec('begin immediate');
    } catch (error) {
      sqlite.close();
      throw error;
    }
  }
  // On failure, migrate() closes the file, which rolls the transaction back.
  await migrate(db, 'sqlite');
  if (exclusive) {
    sqlite.exec('commit');
  }
  return db;
}

function hasPendingMigrations(sqlite: SQLite.Database): boolean {
  const table = sqlite.prepare("select name from sqlite_master where type = 'table' and name = ?").get(DEFAULT_MIGRATION_TABLE);
  if (!table) {
    return true;
  }
  const applied = new Set(sqlite.prepare(`select name from "${DEFAULT_MIGRATION_TABLE}"`).pluck().all());
  return Object.keys(createMigrations('sqlite')).some((name) => !applied.has(name));
}

/**
 * Applies pending migrations. On PostgreSQL, kysely's migrator holds a session-level advisory lock
 * while it runs them in one transaction, so processes that start together apply each migration once.
 */
async function migrate(db: Kysely<Database>, dialect: DialectName, schema?: string): Promise<Kysely<Database>> {
  const migrations = createMigrations(dialect);
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableSchema: schema,
  });
  const { error } = await migrator.migrateToLatest();
  if (error) {
    await db.destroy();
    throw error;
  }
  return db;
}

/** Returns the current time in epoch seconds, the unit every timestamp column uses. */
export function epochSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
