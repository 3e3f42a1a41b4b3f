import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';

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
 * Builds the oidc-provider storage adapter class over the Portcullis database. Every OAuth artefact
 * lives in one table keyed by model and id. The `Client` model reads the devices table instead.
 */
export function createOidcAdapter(store: Store, hooks: OidcAdapterHooks = {}): new (model: string) => Adapter {
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
