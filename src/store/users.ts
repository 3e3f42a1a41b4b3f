import type { Selectable } from 'kysely';

import { epochSeconds, type Store } from './database.ts';
import { recordRevocationIn, type Revocation } from './revocation-events.ts';
import type { UserTable } from './schema.ts';

/**
 * Usernames: 1 to 64 characters of letters, digits, `.`, `_`, `-` and `@`, compared as stored, and
 * not dots alone, which would read as a relative path segment in `/admin/api/users/<name>`.
 */
export const usernamePattern = /^(?!\.+$)[A-Za-z0-9._@-]{1,64}$/;

/** A user row as read from the database. */
export type User = Selectable<UserTable>;

/** Adds a user with an already hashed password, with the admin role when `admin` is true; throws on a duplicate username. */
export async function insertUser(store: Store, username: string, passwordHash: string, admin = false): Promise<void> {
  await store.insertInto('users')
    .values({ username, password_hash: passwordHash, disabled: 0, admin: admin ? 1 : 0, created_at: epochSeconds() })
    .execute();
}

/** Looks up one user. */
export async function findUser(store: Store, username: string): Promise<User | undefined> {
  return store.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
}

/** Lists users, oldest first. */
export async function listUsers(store: Store): Promise<User[]> {
  return store.selectFrom('users').selectAll().orderBy('created_at').orderBy('username').execute();
}

/**
 * Sets or clears the disabled flag; returns false when the user does not exist. `event` is recorded
 * in the same transaction, so a disabled flag never commits without it.
 */
export async function setUserDisabled(store: Store, username: string, disabled: boolean, event?: Revocation): Promise<boolean> {
  return store.transaction().execute(async (trx) => {
    const result = await trx.updateTable('users').set({ disabled: disabled ? 1 : 0 }).where('username', '=', username).executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) {
      return false;
    }
    if (event) {
      await recordRevocationIn(trx, event);
    }
    return true;
  });
}

/** Replaces a user's password hash; returns false when the user does not exist. */
export async function setUserPassword(store: Store, username: string, passwordHash: string): Promise<boolean> {
  const result = await store.updateTable('users').set({ password_hash: passwordHash }).where('username', '=', username).executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Grants or withdraws the admin role; returns false when the user does not exist. */
export async function setUserAdmin(store: Store, username: string, admin: boolean): Promise<boolean> {
  const result = await store.updateTable('users').set({ admin: admin ? 1 : 0 }).where('username', '=', username).executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Tells whether a user exists, is enabled and has the admin role, read from the database on every call. */
export async function isActiveAdmin(store: Store, username: string): Promise<boolean> {
  const row = await store.selectFrom('users').select('username')
    .where('username', '=', username).where('admin', '=', 1).where('disabled', '=', 0)
    .executeTakeFirst();
  return row !== undefined;
}
