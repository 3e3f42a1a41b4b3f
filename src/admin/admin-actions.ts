import { PortcullisError } from '../errors.ts';
import { epochSeconds } from '../store/database.ts';
import { deleteDevice } from '../store/devices.ts';
import { tokenKey, type Revocation } from '../store/revocation-events.ts';
import { revokeGrantsOfUser } from '../store/user-grants.ts';
import { setUserDisabled } from '../store/users.ts';
import type { WebContext } from '../web/context.ts';

// Revoked grants stay on the deny-list for the longest access-token lifetime plus leeway.
const denyListSeconds = 86_400 + 60;

/** The target of a connection revocation: its grant, or its single token when `grant_id` is null. */
export interface RevokedTarget {
  grant_id: string | null;
}

/**
 * Revokes the session behind one live connection of this node, as `portcullis sessions revoke`
 * does: the whole grant when the token belongs to one, else that single token. Every socket of it
 * closes with 4403. Throws `not_found` when this node has no connection with the id.
 */
export async function revokeConnection(context: WebContext, connectionId: string): Promise<RevokedTarget> {
  const connection = context.registry.get(connectionId);
  if (!connection) {
    throw new PortcullisError('not_found');
  }

  const { grantId, jti, exp, payload } = connection.token;
  if (!grantId) {
    // A client-credentials token belongs to no grant, so that one token is revoked by issuer and jti.
    await context.revocations.revoke({ kind: 'token', value: tokenKey(String(payload.iss), jti), reason: 'admin', expiresAt: exp + 60 });
    return { grant_id: null };
  }

  await context.revocations.revoke({ kind: 'grant', value: grantId, reason: 'admin', expiresAt: epochSeconds() + denyListSeconds });
  await context.store.deleteFrom('oidc_payloads').where('grant_id', '=', grantId).execute();
  await context.store.deleteFrom('oidc_payloads').where('model', '=', 'Grant').where('id', '=', grantId).execute();
  await context.store.deleteFrom('browser_sessions').where('grant_id', '=', grantId).execute();
  return { grant_id: grantId };
}

/**
 * Removes a device, as `portcullis devices remove` does: its tokens are refused and its live
 * sockets close with 4403. Throws `not_found` for an unknown client id.
 */
export async function disableDevice(context: WebContext, clientId: string): Promise<void> {
  const event: Revocation = { kind: 'client', value: clientId, reason: 'device_removed', expiresAt: epochSeconds() };
  if (!await deleteDevice(context.store, clientId, event)) {
    throw new PortcullisError('not_found');
  }

  // The event is already recorded with the deletion, so this only closes local sockets and announces it to other nodes.
  context.revocations.applyRecorded(event);
}

/**
 * Disables a user, as `portcullis users disable` does: the user's sockets close with 4403 and the
 * user's grants are revoked, so enabling the user again revives no old session. Throws `not_found`
 * for an unknown username.
 */
export async function disableUser(context: WebContext, username: string): Promise<void> {
  const event: Revocation = { kind: 'user', value: username, reason: 'user_disabled', expiresAt: epochSeconds() };
  if (!await setUserDisabled(context.store, username, true, event)) {
    throw new PortcullisError('not_found');
  }

  context.revocations.applyRecorded(event);
  await revokeGrantsOfUser(context.store, username, 'user_disabled');
}
