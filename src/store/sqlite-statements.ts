import type SQLite from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

// Portcullis runs a few dozen distinct statements; the bound only stops unexpected growth.
const maxCachedStatements = 256;

/**
 * Wraps a better-sqlite3 database for kysely so that each SQL text is prepared once. kysely's SQLite
 * driver prepares every query anew, which costs more than running it for the small lookups of a
 * handshake. SQLite itself prepares a cached statement again after a schema change.
 */
export function withStatementCache(database: SQLite.Database): SqliteDatabase {
  const statements = new Map<string, SqliteStatement>();

  return {
    close: () => database.close(),
    prepare(sql) {
      let statement = statements.get(sql);
      if (!statement) {
        if (statements.size >= maxCachedStatements) {
          statements.delete(statements.keys().next().value!);
        }
        statement = database.prepare(sql) as unknown as SqliteStatement;
        statements.set(sql, statement);
      }
      return statement;
    },
  };
}
