import { adminRootSegment, adminStatsScope } from '../channels/admin-channels.ts';
import { parseChannelFilter } from '../channels/names.ts';
import { isChannelScope } from '../channels/permissions.ts';
import type { Store } from '../store/database.ts';
import { isActiveAdmin } from '../store/users.ts';
import type { DeviceTable } from '../store/schema.ts';

/** Scopes a device gets when it is registered without `--scope`. */
export const defaultDeviceScopes: readonly string[] = Object.freeze([
  'publish:devices/{client_id}/#',
  'subscribe:devices/{client_id}/commands',
]);

/** Scopes every user's browser session gets, besides one per device the user owns. */
export const defaultUserScopes: readonly string[] = Object.freeze([
  'subscribe:users/{sub}/#',
]);

const placeholderSegments = new Set(['{client_id}', '{sub}']);

/** Scope that lets a device's token read `GET /metrics`; registered with `devices add --scope admin:metrics`. */
export const metricsScope = 'admin:metrics';

/** Tells whether a device may be registered for `scope`: a channel scope or `admin:metrics`. */
export function isDeviceScope(scope: string): boolean {
  return isChannelScope(scope) || scope === metricsScope;
}

/** Returns the scope that lets an owner watch everything a device publishes. */
export function ownedDeviceScope(clientId: string): string {
  return `subscribe:devices/${clientId}/#`;
}

/**
 * Checks a scope value an operator registers: `admin:metrics`, or `subscribe:` or `publish:` and a
 * channel filter, in which `{client_id}` and `{sub}` may stand for whole segments. Returns an error
 * message, or null when the value is valid.
 */
export function channelScopeProblem(scope: string): string | null {
  if (scope === metricsScope) {
    return null;
  }
  if (!isChannelScope(scope)) {
    return `"${scope}" must start with "subscribe:" or "publish:", or be "${metricsScope}"`;
  }

  const segments = scope.slice(scope.indexOf(':') + 1).split('/');
  // Gateways ignore `admin/` scopes in device tokens, so registering one would grant nothing.
  if (segments[0] === adminRootSegment) {
    return `"${scope}" names the ${adminRootSegment}/ channels, which only the browser sessions of admin users may use`;
  }
  // Inside a segment, as in `{client_id}-x`, device `a` would reach the channels of device `a-x`.
  if (segments.some((segment) => /\{(client_id|sub)\}/.test(segment) && !placeholderSegments.has(segment))) {
    return `"${scope}" uses {client_id} or {sub} inside a segment; a placeholder must be a whole segment, as in devices/{client_id}/#`;
  }

  // Placeholders are checked with a stand-in value, so they may appear wherever a segment may.
  const pattern = segments.map((segment) => (placeholderSegments.has(segment) ? 'x' : segment)).join('/');
  if (!parseChannelFilter(pattern)) {
    return `"${scope}" has an invalid channel pattern: use [a-z0-9_-] segments separated by "/", "*" for one segment, a final "#" for any rest, at most 8 segments and 200 bytes`;
  }
  return null;
}

/** Returns the scopes registered for a device: its own list, or the defaults. */
export function registeredDeviceScopes(device: Pick<DeviceTable, 'scopes'>): string[] {
  return device.scopes ? device.scopes.split(' ').filter(Boolean) : [...defaultDeviceScopes];
}

/**
 * Returns the scopes a user's browser session may hold now: the defaults, one per owned device,
 * and `subscribe:admin/stats` for an enabled admin. A refresh filters the session's token by this
 * list, so a device given away or a withdrawn admin role leaves the user's next token.
 */
// NOTE: one scope per owned device ends up in the session cookie, which browsers drop above about
// 4 KB, so roughly 80 owned devices per user is the ceiling (an estimate from the token's size).
export async function currentUserScopes(store: Store, username: string): Promise<string[]> {
  const owned = await store.selectFrom('devices').select('client_id').where('owner', '=', username).orderBy('client_id').execute();
  const admin = await isActiveAdmin(store, username) ? [adminStatsScope] : [];
  return [...defaultUserScopes, ...owned.map((device) => ownedDeviceScope(device.client_id)), ...admin];
}
