import fs from 'node:fs';
import path from 'node:path';

import SQLite from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, type MigrationProvider } from 'kysely';

import { migrations } from './migrations.ts';
import type { Database } from './schema.ts';

/** The Portcullis database handle; `close()` releases the file. */
export type Store = Kysely<Database>;

const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};

/**
 * Opens (creating if needed) `<dataDir>/portcullis.db` in WAL mode and applies pending migrations.
 * Several processes may open it at once: the server and the management commands share it.
 */
export async function openStore(dataDir: string): Promise<Store> {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, 'portcullis.db');

  const sqlite = new SQLite(file);
  sqlite.pragma('journal_mode = WAL');
  // Management commands write while the server runs; wait for the lock instead of failing at once.
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  fs.chmodSync(file, 0o600);

  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  const migrator = new Migrator({ db, provider: migrationProvider });
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
