import { type ColumnDefinitionBuilder, type Kysely, type Migration } from 'kysely';

/** The SQL dialects the store runs on. */
export type DialectName = 'sqlite' | 'postgres';

/**
 * Column types that differ between the dialects. The SQLite types are the ones these migrations
 * used before PostgreSQL was supported, so existing SQLite databases and new ones have the same schema.
 */
interface ColumnTypes {
  /**
   * A 64-bit integer, for epoch seconds and event ids. SQLite's `integer` stores up to 64 bits, but
   * PostgreSQL's is 32 bits wide, and epoch seconds pass its maximum in January 2038.
   */
  int64: 'integer' | 'bigint';
  /** Makes the column an ascending generated key: SQLite's `autoincrement` or a PostgreSQL identity. */
  generatedKey: (column: ColumnDefinitionBuilder) => ColumnDefinitionBuilder;
}

const columnTypes: Record<DialectName, ColumnTypes> = {
  sqlite: {
    int64: 'integer',
    generatedKey: (column) => column.primaryKey().autoIncrement(),
  },
  postgres: {
    int64: 'bigint',
    generatedKey: (column) => column.primaryKey().generatedAlwaysAsIdentity(),
  },
};

/**
 * Builds the schema migrations for one dialect, in the order they apply. Never change what a
 * shipped migration does on a dialect; add a new migration instead.
 */
export function createMigrations(dialect: DialectName): Record<string, Migration> {
  const types = columnTypes[dialect];
  return {
    '2026-12-04-001-initial': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('oidc_payloads')
          .addColumn('model', 'text', (column) => column.notNull())
          .addColumn('id', 'text', (column) => column.notNull())
          .addColumn('payload', 'text', (column) => column.notNull())
          .addColumn('grant_id', 'text')
          .addColumn('user_code', 'text')
          .addColumn('uid', 'text')
          .addColumn('expires_at', types.int64)
          .addColumn('consumed_at', types.int64)
          .addPrimaryKeyConstraint('oidc_payloads_pk', ['model', 'id'])
          .execute();
        await db.schema.createIndex('oidc_payloads_grant_id').on('oidc_payloads').column('grant_id').execute();
        await db.schema.createIndex('oidc_payloads_user_code').on('oidc_payloads').columns(['model', 'user_code']).execute();
        await db.schema.createIndex('oidc_payloads_uid').on('oidc_payloads').columns(['model', 'uid']).execute();
        await db.schema.createIndex('oidc_payloads_expires_at').on('oidc_payloads').column('expires_at').execute();

        await db.schema.createTable('users')
          .addColumn('username', 'text', (column) => column.primaryKey())
          .addColumn('password_hash', 'text', (column) => column.notNull())
          .addColumn('disabled', 'integer', (column) => column.notNull().defaultTo(0))
          .addColumn('created_at', types.int64, (column) => column.notNull())
          .execute();

        await db.schema.createTable('devices')
          .addColumn('client_id', 'text', (column) => column.primaryKey())
          .addColumn('auth_method', 'text', (column) => column.notNull())
          .addColumn('secret_hash', 'text')
          .addColumn('jwks', 'text')
          .addColumn('owner', 'text')
          .addColumn('created_at', types.int64, (column) => column.notNull())
          .execute();

        await db.schema.createTable('signing_keys')
          .addColumn('kid', 'text', (column) => column.primaryKey())
          .addColumn('private_jwk', 'text', (column) => column.notNull())
          .addColumn('status', 'text', (column) => column.notNull())
          .addColumn('created_at', types.int64, (column) => column.notNull())
          .execute();

        await db.schema.createTable('secrets')
          .addColumn('name', 'text', (column) => column.primaryKey())
          .addColumn('value', 'text', (column) => column.notNull())
          .addColumn('created_at', types.int64, (column) => column.notNull())
          .execute();

        await db.schema.createTable('revoked_grants')
          .addColumn('grant_id', 'text', (column) => column.primaryKey())
          .addColumn('revoked_at', types.int64, (column) => column.notNull())
          .addColumn('expires_at', types.int64, (column) => column.notNull())
          .execute();

        await db.schema.createTable('browser_sessions')
          .addColumn('grant_id', 'text', (column) => column.primaryKey())
          .addColumn('username', 'text', (column) => column.notNull())
          .addColumn('refresh_token', 'text', (column) => column.notNull())
          .addColumn('created_at', types.int64, (column) => column.notNull())
          .addColumn('expires_at', types.int64, (column) => column.notNull())
          .execute();
      },
    },
    '2026-12-04-002-revocation-events': {
      async up(db: Kysely<any>) {
        // Revocations written by any process, read in order by every server to close live sockets.
        await db.schema.createTable('revocation_events')
          .addColumn('id', types.int64, types.generatedKey)
          .addColumn('kind', 'text', (column) => column.notNull())
          .addColumn('value', 'text', (column) => column.notNull())
          .addColumn('reason', 'text', (column) => column.notNull())
          .addColumn('created_at', types.int64, (column) => column.notNull())
          .execute();

        // Single access tokens revoked by `jti` and issuer, for tokens that belong to no grant.
        await db.schema.createTable('revoked_tokens')
          .addColumn('jti', 'text', (column) => column.notNull())
          .addColumn('iss', 'text', (column) => column.notNull())
          .addColumn('revoked_at', types.int64, (column) => column.notNull())
          .addColumn('expires_at', types.int64, (column) => column.notNull())
          .addPrimaryKeyConstraint('revoked_tokens_pk', ['jti', 'iss'])
          .execute();
      },
    },
    '2026-12-04-003-signing-key-retirement': {
      async up(db: Kysely<any>) {
        // When a key stopped signing; it stays published until every token it signed has expired.
        await db.schema.alterTable('signing_keys').addColumn('retired_at', types.int64).execute();
      },
    },
    '2026-12-04-004-device-scopes': {
      async up(db: Kysely<any>) {
        // The channel scopes a device may ask for; null keeps the defaults.
        await db.schema.alterTable('devices').addColumn('scopes', 'text').execute();
        await db.schema.createIndex('devices_owner').on('devices').column('owner').execute();
      },
    },
    '2026-12-05-001-audit-events': {
      async up(db: Kysely<any>) {
        // Security events kept for the retention period; `time` is epoch milliseconds.
        await db.schema.createTable('audit_events')
          .addColumn('id', types.int64, types.generatedKey)
          .addColumn('time', types.int64, (column) => column.notNull())
          .addColumn('event', 'text', (column) => column.notNull())
          .addColumn('level', 'integer', (column) => column.notNull())
          .addColumn('fields', 'text', (column) => column.notNull())
          .execute();
        await db.schema.createIndex('audit_events_time').on('audit_events').column('time').execute();
        await db.schema.createIndex('audit_events_event_time').on('audit_events').columns(['event', 'time']).execute();
      },
    },
    '2026-12-05-002-user-admin-role': {
      async up(db: Kysely<any>) {
        // 1 lets the user open the admin console; existing users start without the role.
        await db.schema.alterTable('users').addColumn('admin', 'integer', (column) => column.notNull().defaultTo(0)).execute();
      },
    },
    '2026-12-05-003-device-proof-of-possession': {
      async up(db: Kysely<any>) {
        // 1 makes the auth server issue this device only DPoP-bound tokens (RFC 9449).
        await db.schema.alterTable('devices').addColumn('dpop_required', 'integer', (column) => column.notNull().defaultTo(0)).execute();
        // PEM certificate of a device that authenticates with mutual TLS (RFC 8705); null otherwise.
        await db.schema.alterTable('devices').addColumn('certificate', 'text').execute();
      },
    },
    '2026-12-05-004-used-proofs': {
      async up(db: Kysely<any>) {
        // DPoP proofs already used, kept until their window closes, for deployments without Redis.
        await db.schema.createTable('used_proofs')
          .addColumn('key', 'text', (column) => column.primaryKey())
          .addColumn('expires_at', types.int64, (column) => column.notNull())
          .execute();
        await db.schema.createIndex('used_proofs_expires_at').on('used_proofs').column('expires_at').execute();
      },
    },
  };
}
