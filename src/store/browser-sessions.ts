import { epochSeconds, type Store } from './database.ts';
import type { BrowserSessionTable } from './schema.ts';

/** Stores or replaces the server-side half of a browser session. */
export async function upsertBrowserSession(store: Store, session: Omit<BrowserSessionTable, 'created_at'>): Promise<void> {
  await store.insertInto('browser_sessions')
    .values({ ...session, created_at: epochSeconds() })
    .onConflict((conflict) => conflict.column('grant_id').doUpdateSet({
      refresh_token: session.refresh_token,
      expires_at: session.expires_at,
    }))
    .execute();
}

/** Looks up the browser session of a grant. */
export async function findBrowserSession(store: Store, grantId: string): Promise<BrowserSessionTable | undefined> {
  return store.selectFrom('browser_sessions').selectAll().where('grant_id', '=', grantId).executeTakeFirst();
}

/** Deletes the browser session of a grant. */
export async function deleteBrowserSession(store: Store, grantId: string): Promise<void> {
  await store.deleteFrom('browser_sessions').where('grant_id', '=', grantId).execute();
}

/** Deletes browser sessions whose refresh token has expired; returns how many were removed. */
export async function pruneBrowserSessions(store: Store): Promise<number> {
  const result = await store.deleteFrom('browser_sessions').where('expires_at', '<=', epochSeconds()).executeTakeFirst();
  return Number(result.numDeletedRows);
}
