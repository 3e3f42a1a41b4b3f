import type { ErrorCode } from '../../errors.ts';
import type { Store } from '../../store/database.ts';
import { findBrowserSession } from '../../store/browser-sessions.ts';
import { findDevice } from '../../store/devices.ts';
import { isTokenRevoked } from '../../store/revocation-events.ts';
import { isGrantRevoked } from '../../store/revocations.ts';
import { findUser } from '../../store/users.ts';
import type { CheckResult, HandshakeCheck, HandshakeState } from '../handshake.ts';
import { boundKeyThumbprint } from '../dpop/verifier.ts';
import type { RevocationVerdicts } from '../revocation-verdicts.ts';
import type { VerifiedToken } from '../token-verifier.ts';

async function userIsActive(store: Store, username: string): Promise<boolean> {
  const user = await findUser(store, username);
  return user !== undefined && user.disabled === 0;
}

/** Sources the revocation check may consult besides the deny-lists. */
export interface RevocationScope {
  /** False for tokens of an external issuer, whose clients are registered there rather than here. */
  deviceRegistry: boolean;
}

/** Result of the revocation lookups: the rejection code, or for an admitted browser token its session's expiry. */
interface RevocationLookup {
  code?: ErrorCode;
  /** Epoch seconds at which the browser session's refresh token expires and the session may be pruned. */
  sessionExpiresAt?: number;
}

/**
 * Returns `token_revoked` when a verified token may no longer be used: its grant or the token itself
 * is on the deny-list, its device was removed, its browser session ended, or its user was disabled.
 * It reads the database each time, so a management command in another process takes effect at once.
 */
export async function findRevocation(store: Store, kind: 'browser' | 'device', verified: VerifiedToken, scope: RevocationScope = { deviceRegistry: true }): Promise<ErrorCode | undefined> {
  return (await lookUpRevocation(store, kind, verified, scope)).code;
}

async function lookUpRevocation(store: Store, kind: 'browser' | 'device', verified: VerifiedToken, scope: RevocationScope): Promise<RevocationLookup> {
  const revoked: RevocationLookup = { code: 'token_revoked' };
  if (verified.grantId && await isGrantRevoked(store, verified.grantId)) {
    return revoked;
  }
  if (await isTokenRevoked(store, String(verified.payload.iss), verified.jti)) {
    return revoked;
  }

  if (kind === 'device' && !scope.deviceRegistry) {
    return {};
  }
  if (kind === 'device') {
    const device = await findDevice(store, verified.clientId);
    if (!device) {
      return revoked;
    }
    // A device removed and registered again under the same client id is a new client, so tokens
    // issued before its registration belong to the removed one and stay revoked.
    // NOTE: `iat` and `created_at` are whole seconds, so a token issued in the second of the new
    // registration still passes.
    if (typeof verified.payload.iat !== 'number' || verified.payload.iat < device.created_at) {
      return revoked;
    }
    // The auth server already issues such a device only DPoP-bound tokens. The gateway checks again,
    // so the rule still applies if that setting is lost.
    if (device.dpop_required === 1 && !boundKeyThumbprint(verified)) {
      return { code: 'token_invalid' };
    }
    // A device approved through the device flow acts for the user who approved it.
    if (verified.grantId && !await userIsActive(store, verified.sub)) {
      return revoked;
    }
    return {};
  }

  const session = verified.grantId ? await findBrowserSession(store, verified.grantId) : undefined;
  if (!session || !await userIsActive(store, verified.sub)) {
    return revoked;
  }
  return { sessionExpiresAt: session.expires_at };
}

/** Matches the scope a browser session gets for a device its user owns. */
const ownedDeviceScopePattern = /^subscribe:devices\/([a-z0-9_-]+)\/#$/;

/**
 * Removes from a browser token the owned-device scopes that no longer hold: the device was removed,
 * or registered again (for any owner) after the token was issued. A session token keeps its scopes
 * until it expires, and without this its user would go on watching a device given to someone else.
 */
export async function withoutLostDevices(store: Store, verified: VerifiedToken): Promise<VerifiedToken> {
  const scopes = verified.scope.split(' ').filter(Boolean);
  const ownedIds = scopes.map((scope) => ownedDeviceScopePattern.exec(scope)?.[1]).filter((id): id is string => id !== undefined);
  if (ownedIds.length === 0) {
    return verified;
  }

  // One query for every owned device, because this runs on each browser handshake.
  const issuedAt = typeof verified.payload.iat === 'number' ? verified.payload.iat : 0;
  const current = await store.selectFrom('devices').select('client_id')
    .where('client_id', 'in', ownedIds)
    .where('owner', '=', verified.sub)
    .where('created_at', '<=', issuedAt)
    .execute();
  const stillOwned = new Set(current.map((device) => device.client_id));

  const kept = scopes.filter((scope) => {
    const clientId = ownedDeviceScopePattern.exec(scope)?.[1];
    return clientId === undefined || stillOwned.has(clientId);
  });
  return kept.length === scopes.length ? verified : { ...verified, scope: kept.join(' ') };
}

/** A token admitted for a connection, and the time until which its lookups stay valid without an event. */
interface Admission {
  token: VerifiedToken;
  /** Epoch milliseconds. Pruning an expired browser session records no revocation event. */
  holdsUntilMs: number;
}

/**
 * Returns the token as it may be used for a connection of `kind`, or the code that refuses it. For
 * a browser the scopes are narrowed to the devices its user still owns.
 */
export async function admitToken(store: Store, kind: 'browser' | 'device', verified: VerifiedToken, scope: RevocationScope): Promise<ErrorCode | VerifiedToken> {
  const admission = await admit(store, kind, verified, scope);
  return typeof admission === 'string' ? admission : admission.token;
}

async function admit(store: Store, kind: 'browser' | 'device', verified: VerifiedToken, scope: RevocationScope): Promise<ErrorCode | Admission> {
  const lookup = await lookUpRevocation(store, kind, verified, scope);
  if (lookup.code) {
    return lookup.code;
  }

  const token = kind === 'browser' ? await withoutLostDevices(store, verified) : verified;
  const holdsUntilMs = lookup.sessionExpiresAt === undefined ? Number.POSITIVE_INFINITY : lookup.sessionExpiresAt * 1000;
  return { token, holdsUntilMs };
}

/**
 * Builds the handshake check around `admitToken`, which runs last because it needs the verified
 * token. With `verdicts`, a token admitted before in the current revocation epoch skips the database,
 * and the check's `confirm` step reads the database again when a revocation was applied while the
 * handshake waited on its limits. Without that step such a revocation would find no connection to close.
 */
export function revocationCheck(store: Store, scope: RevocationScope = { deviceRegistry: true }, verdicts?: RevocationVerdicts): HandshakeCheck {
  async function lookUp(state: HandshakeState, kind: 'browser' | 'device', verified: VerifiedToken): Promise<CheckResult> {
    const epoch = verdicts?.epoch;
    state.revocationEpoch = epoch;
    const admission = await admit(store, kind, verified, scope);
    if (typeof admission === 'string') {
      return admission;
    }

    state.verified = admission.token;
    if (verdicts && epoch !== undefined) {
      verdicts.remember(kind, verified, admission.token, { epoch, holdsUntilMs: admission.holdsUntilMs });
    }
    return undefined;
  }

  return {
    name: 'revocation',
    run(state) {
      if (!state.verified || !state.kind) {
        return 'token_invalid';
      }

      const admitted = verdicts?.lookup(state.kind, state.verified);
      if (admitted) {
        state.revocationEpoch = verdicts!.epoch;
        state.verified = admitted;
        return undefined;
      }
      return lookUp(state, state.kind, state.verified);
    },
    // Returns without a promise when no revocation came in, so the caller can register the
    // connection in the same turn of the event loop, before any other revocation is applied.
    confirm(state) {
      if (!verdicts || state.revocationEpoch === verdicts.epoch) {
        return undefined;
      }
      return lookUp(state, state.kind!, state.verified!);
    },
  };
}
