import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';

import { errorCatalogue, PortcullisError } from '../errors.ts';
import { epochSeconds, type Store } from './database.ts';
import { findDeviceClient } from './devices.ts';

/** Hooks the adapter calls besides storage. */
export interface OidcAdapterHooks {
  /**
   * Called once when oidc-provider revokes a whole grant (logout, refresh-token reuse, revocation of
   * a refresh token). oidc-provider waits for it before it responds, so the grant is on the deny-list
   * before anyone learns of the revocation.
   */
  onGrantRevoked?: (grantId: string) => Promise<void>;
}

/**
 * Returns oidc-provider's `temporarily_unavailable` error, with status 503, for the store's error of
 * that code, and any other error unchanged. oidc-provider responds to every exception that is not
 * its own with 500 `server_error`, so code that oidc-provider calls rethrows store errors through this.
 */
export function toProviderError(error: unknown): unknown {
  if (!(error instanceof PortcullisError) || error.code !== 'temporarily_unavailable') {
    return error;
  }

  // The detail goes to oidc-provider's events (the `token.rejected` log line), never to the client.
  const unavailable = new errors.TemporarilyUnavailable(errorCatalogue.temporarily_unavailable.description, { cause: error, detail: 'the database cannot be reached' });
  // The library's error classes fix the status at 400, and `expose` keeps the code in the response body.
  return Object.assign(unavailable, { status: 503, statusCode: 503, expose: true });
}

/**
 * Returns the store's `temporarily_unavailable` error behind an error made by `toProviderError`,
 * and any other error unchanged, for code outside oidc-provider that calls its models.
 */
export function fromProviderError(error: unknown): unknown {
  return error instanceof errors.TemporarilyUnavailable && error.cause instanceof PortcullisError ? error.cause : error;
}

/** Wraps an async function so that it rethrows errors through `toProviderError`. */
export function withProviderErrors<A extends unknown[], R>(work: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args) => {
    try {
      return await work(...args);
    } catch (error) {
      throw toProviderError(error);
    }
  };
}

/**
 * Builds the oidc-provider storage adapter class over the Portcullis database. Every OAuth artefact
 * lives in one table keyed by model and id. The `Client` model reads the devices table instead.
 * While the database cannot be reached, each method rejects with oidc-provider's
 * `temporarily_unavailable` (see `toProviderError`).
 */
export function createOidcAdapter(store: Store, hooks: OidcAdapterHooks = {}): new (model: string) => Adapter {
  const StoreOidcAdapter = createStoreAdapter(store, hooks);
  return class OidcAdapter implements Adapter {
    private readonly stored: Adapter;

    constructor(model: string) {
      this.stored = new StoreOidcAdapter(model);
    }

    upsert(id: string, payload: AdapterPayload, expiresIn?: number) {
      return rethrownForProvider(this.stored.upsert(id, payload, expiresIn));
    }

    find(id: string) {
      return rethrownForProvider(this.stored.find(id));
    }

    findByUserCode(userCode: string) {
      return rethrownForProvider(this.stored.findByUserCode(userCode));
    }

    findByUid(uid: string) {
      return rethrownForProvider(this.stored.findByUid(uid));
    }

    consume(id: string) {
      return rethrownForProvider(this.stored.consume(id));
    }

    destroy(id: string) {
      return rethrownForProvider(this.stored.destroy(id));
    }

    revokeByGrantId(grantId: string) {
      return rethrownForProvider(this.stored.revokeByGrantId(grantId));
    }
  };
}

function rethrownForProvider<T>(operation: Promise<T>): Promise<T> {
  return operation.catch((error: unknown) => {
    throw toProviderError(error);
  });
}

function createStoreAdapter(store: Store, hooks: OidcAdapterHooks): new (model: string) => Adapter {
  return class StoreOidcAdapter implements Adapter {
    readonly model: string;

    constructor(model: string) {
      this.model = model;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
      const row = {
        model: this.model,
        id,
        payload: JSON.stringify(payload),
        grant_id: payload.grantId ?? null,
        user_code: payload.userCode ?? null,
        uid: payload.uid ?? null,
        expires_at: expiresIn ? epochSeconds() + expiresIn : null,
        consumed_at: null,
      };
      await store.insertInto('oidc_payloads').values(row)
        .onConflict((conflict) => conflict.columns(['model', 'id']).doUpdateSet({
          payload: row.payload,
          grant_id: row.grant_id,
          user_code: row.user_code,
          uid: row.uid,
          expires_at: row.expires_at,
          consumed_at: null,
        }))
        .execute();
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.model === 'Client') {
        return findDeviceClient(store, id);
      }
      return this.findWhere('id', id);
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      return this.findWhere('user_code', userCode);
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      return this.findWhere('uid', uid);
    }

    /**
     * Marks a code or refresh token used. oidc-provider checks `consumed` and calls this in two
     * steps, so two concurrent requests can both pass the check. The conditional update lets only
     * one of them win; the loser is treated as reuse, which revokes the whole grant. On PostgreSQL
     * a concurrent update waits for the winner's row lock and then checks `consumed_at` again
     * (READ COMMITTED), so it updates nothing.
     */
    async consume(id: string): Promise<void> {
      const result = await store.updateTable('oidc_payloads')
        .set({ consumed_at: epochSeconds() })
        .where('model', '=', this.model)
        .where('id', '=', id)
        .where('consumed_at', 'is', null)
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) === 1) {
        return;
      }

      const row = await store.selectFrom('oidc_payloads').select('grant_id')
        .where('model', '=', this.model).where('id', '=', id)
        .executeTakeFirst();
      if (row?.grant_id) {
        await store.deleteFrom('oidc_payloads').where('grant_id', '=', row.grant_id).execute();
        await store.deleteFrom('oidc_payloads').where('model', '=', 'Grant').where('id', '=', row.grant_id).execute();
        await hooks.onGrantRevoked?.(row.grant_id);
      }
      throw new errors.InvalidGrant(`${this.model === 'RefreshToken' ? 'refresh token' : 'grant'} already used`);
    }

    async destroy(id: string): Promise<void> {
      await store.deleteFrom('oidc_payloads').where('model', '=', this.model).where('id', '=', id).execute();
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await store.deleteFrom('oidc_payloads').where('grant_id', '=', grantId).execute();
      // oidc-provider calls this once per token model and always for AccessToken, so the hook runs once.
      if (this.model === 'AccessToken') {
        await hooks.onGrantRevoked?.(grantId);
      }
    }

    private async findWhere(column: 'id' | 'user_code' | 'uid', value: string): Promise<AdapterPayload | undefined> {
      const row = await store.selectFrom('oidc_payloads')
        .select(['payload', 'expires_at', 'consumed_at'])
        .where('model', '=', this.model)
        .where(column, '=', value)
        .executeTakeFirst();
      if (!row) {
        return undefined;
      }

      if (row.expires_at !== null && row.expires_at <= epochSeconds()) {
        return undefined;
      }

      const payload = JSON.parse(row.payload) as AdapterPayload;
      return row.consumed_at === null ? payload : { ...payload, consumed: row.consumed_at };
    }
  };
}

/** Deletes expired OAuth artefacts; returns how many rows were removed. */
export async function pruneExpiredPayloads(store: Store): Promise<number> {
  const result = await store.deleteFrom('oidc_payloads')
    .where('expires_at', 'is not', null)
    .where('expires_at', '<=', epochSeconds())
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
