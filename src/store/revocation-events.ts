import { sql, type Transaction } from 'kysely';

import { epochSeconds, type Store } from './database.ts';
import type { Database } from './schema.ts';
import { isPostgres } from './postgres.ts';
import type { RevocationEventTable } from './schema.ts';
import { insertRevokedGrant } from './revocations.ts';

/** A revocation to record: what is revoked, and until when tokens of it may still appear. */
export interface Revocation {
  kind: RevocationEventTable['kind'];
  value: string;
  reason: string;
  /** Epoch seconds after which no token of it can be valid; used for grant and token deny-list entries. */
  expiresAt: number;
}

/** A recorded revocation event as read back. */
export type RevocationEvent = Pick<RevocationEventTable, 'kind' | 'value' | 'reason'> & { id: number };

/**
 * Records a revocation: the deny-list entry that refuses new handshakes, and an event that every
 * running server reads to close live sockets. Both are written in one transaction.
 */
export async function recordRevocation(store: Store, requested: Revocation): Promise<void> {
  await store.transaction().execute((trx) => recordRevocationIn(trx, requested));
}

/**
 * Records a revocation inside a transaction the caller opened, so that the change it announces,
 * such as a device's deletion, commits with its event or not at all.
 */
export async function recordRevocationIn(trx: Transaction<Database>, requested: Revocation): Promise<void> {
  // An external issuer may set any `exp`; past this bound the entry outlives every server anyway,
  // and a larger value would not fit PostgreSQL's bigint.
  const revocation = { ...requested, expiresAt: Math.min(requested.expiresAt, Number.MAX_SAFE_INTEGER) };
  // Readers remember the highest id they have seen, so ids must become visible in ascending order.
  // PostgreSQL assigns identity values at insert time, but transactions may commit in another
  // order. This lock makes a recording wait until the one before it has committed, and reads take
  // no conflicting lock. SQLite allows one writer at a time anyway.
  if (isPostgres(trx)) {
    await sql`lock table revocation_events in exclusive mode`.execute(trx);
  }
  if (revocation.kind === 'grant') {
    await insertRevokedGrant(trx, revocation.value, revocation.expiresAt);
  }
  if (revocation.kind === 'token') {
    const [iss, jti] = splitTokenKey(revocation.value);
    await trx.insertInto('revoked_tokens')
      .values({ jti, iss, revoked_at: epochSeconds(), expires_at: revocation.expiresAt })
      .onConflict((conflict) => conflict.columns(['jti', 'iss']).doNothing())
      .execute();
  }
  await trx.insertInto('revocation_events')
    .values({ kind: revocation.kind, value: revocation.value, reason: revocation.reason, created_at: epochSeconds() })
    .execute();
}

/** Builds the event value of a single token: its issuer and `jti`, separated by a space. */
export function tokenKey(iss: string, jti: string): string {
  return `${iss} ${jti}`;
}

// An issuer never contains a space (it is a URL without one), while a `jti` from an external
// issuer may, so the first space separates them.
function splitTokenKey(value: string): [string, string] {
  const separator = value.indexOf(' ');
  return [value.slice(0, separator), value.slice(separator + 1)];
}

/** Tells whether one access token is on the deny-list. */
export async function isTokenRevoked(store: Store, iss: string, jti: string): Promise<boolean> {
  const row = await store.selectFrom('revoked_tokens').select('jti')
    .where('jti', '=', jti).where('iss', '=', iss).where('expires_at', '>', epochSeconds())
    .executeTakeFirst();
  return row !== undefined;
}

/** Returns the id of the newest event, or 0, so a starting server reads only later events. */
export async function latestRevocationEventId(store: Store): Promise<number> {
  const row = await store.selectFrom('revocation_events').select((eb) => eb.fn.max('id').as('id')).executeTakeFirst();
  return Number(row?.id ?? 0);
}

/** Reads up to `limit` events after `afterId`, oldest first. */
export async function readRevocationEvents(store: Store, afterId: number, limit = 1000): Promise<RevocationEvent[]> {
  return store.selectFrom('revocation_events').select(['id', 'kind', 'value', 'reason'])
    .where('id', '>', afterId).orderBy('id').limit(limit)
    .execute();
}

/** Deletes events and token deny-list entries older than the given age; returns rows removed. */
export async function pruneRevocationEvents(store: Store, maxAgeSeconds: number): Promise<number> {
  const events = await store.deleteFrom('revocation_events').where('created_at', '<', epochSeconds() - maxAgeSeconds).executeTakeFirst();
  const tokens = await store.deleteFrom('revoked_tokens').where('expires_at', '<=', epochSeconds()).executeTakeFirst();
  return Number(events.numDeletedRows) + Number(tokens.numDeletedRows);
}
