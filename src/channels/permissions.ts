import { adminRootSegment, isAdminChannel } from './admin-channels.ts';
import { filterCovers, isChannelSegment, parseChannelFilter } from './names.ts';

/** Channel actions a token allows, read from its `scope` claim. */
export interface ChannelPermissions {
  /** Filters a subscription must stay within, split into segments. */
  readonly subscribe: readonly (readonly string[])[];
  /** Filters a published channel name must match, split into segments. */
  readonly publish: readonly (readonly string[])[];
}

/** The identity whose values replace `{client_id}` and `{sub}` in a scope. */
export interface ScopeIdentity {
  clientId: string;
  sub: string;
  /**
   * True for a browser session token of the built-in auth server, the only tokens whose `admin/`
   * scopes count. The auth server puts such scopes only into the sessions of admin users.
   */
  adminSession?: boolean;
}

/** Prefix of a scope value that grants subscriptions. */
export const subscribeScopePrefix = 'subscribe:';

/** Prefix of a scope value that grants publishing. */
export const publishScopePrefix = 'publish:';

/** True for a scope value that grants a channel action, such as `publish:devices/{client_id}/#`. */
export function isChannelScope(scope: string): boolean {
  return scope.startsWith(subscribeScopePrefix) || scope.startsWith(publishScopePrefix);
}

/**
 * Replaces the segments `{client_id}` and `{sub}` with the token's own values, or returns null when
 * the scope must grant nothing. A value that is not a valid channel segment (an upper-case letter, a
 * dot, a slash) would change the pattern's shape. A placeholder inside a segment would let one client
 * reach another's channels, because `{client_id}-x` for client `a` is the name of client `a-x`.
 */
function substitute(pattern: string, identity: ScopeIdentity): string | null {
  const segments: string[] = [];
  for (const segment of pattern.split('/')) {
    const value = placeholderValue(segment, identity);
    if (value !== null && !isChannelSegment(value)) {
      return null;
    }
    if (value === null && segment.includes('{')) {
      return null;
    }
    segments.push(value ?? segment);
  }
  return segments.join('/');
}

/** Returns the token value that a whole-segment placeholder stands for, or null for any other segment. */
function placeholderValue(segment: string, identity: ScopeIdentity): string | null {
  if (segment === '{client_id}') {
    return identity.clientId;
  }
  if (segment === '{sub}') {
    return identity.sub;
  }
  return null;
}

/** Reads the channel permissions of a space-separated `scope` claim; unknown or malformed values grant nothing. */
export function permissionsFromScope(scope: string, identity: ScopeIdentity): ChannelPermissions {
  const subscribe: string[][] = [];
  const publish: string[][] = [];

  for (const value of scope.split(' ')) {
    const target = value.startsWith(subscribeScopePrefix) ? subscribe : value.startsWith(publishScopePrefix) ? publish : null;
    if (!target) {
      continue;
    }

    const pattern = substitute(value.slice(value.indexOf(':') + 1), identity);
    const segments = pattern === null ? null : parseChannelFilter(pattern);
    if (!segments || (isAdminChannel(segments) && identity.adminSession !== true)) {
      continue;
    }
    target.push(segments);
  }
  return { subscribe, publish };
}

/**
 * Returns the patterns that may cover `target`. An `admin/` channel or filter is covered only by a
 * pattern that names `admin` itself, so a wide scope such as `subscribe:#` does not reach it.
 */
function patternsFor(patterns: readonly (readonly string[])[], target: readonly string[]): readonly (readonly string[])[] {
  return isAdminChannel(target) ? patterns.filter(isAdminChannel) : patterns;
}

/** True when the permissions allow subscribing to `filter` (already parsed). */
export function maySubscribe(permissions: ChannelPermissions, filter: readonly string[]): boolean {
  return patternsFor(permissions.subscribe, filter).some((pattern) => filterCovers(pattern, filter));
}

/** True when the permissions allow publishing to the concrete channel `channel` (already parsed). */
export function mayPublish(permissions: ChannelPermissions, channel: readonly string[]): boolean {
  return patternsFor(permissions.publish, channel).some((pattern) => filterCovers(pattern, channel));
}

/**
 * Tells whether a message on `channel` may reach a subscriber with these permissions. A filter
 * that starts with a wildcard, such as `#`, matches `admin/` channels in the broker, so delivery
 * checks again that the subscriber has an `admin/` scope.
 */
export function mayReceive(permissions: ChannelPermissions, channel: string): boolean {
  // Runs once per subscriber and message on the fan-out path, so the common case allocates nothing.
  const inAdminNamespace = channel.startsWith(adminRootSegment) && (channel.length === adminRootSegment.length || channel[adminRootSegment.length] === '/');
  return !inAdminNamespace || permissions.subscribe.some(isAdminChannel);
}

/** True when the permissions allow any publish at all; the backend publish API requires one. */
export function mayPublishAnywhere(permissions: ChannelPermissions): boolean {
  return permissions.publish.length > 0;
}
