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
    if (segments) {
      target.push(segments);
    }
  }
  return { subscribe, publish };
}

/** True when the permissions allow subscribing to `filter` (already parsed). */
export function maySubscribe(permissions: ChannelPermissions, filter: readonly string[]): boolean {
  return permissions.subscribe.some((pattern) => filterCovers(pattern, filter));
}

/** True when the permissions allow publishing to the concrete channel `channel` (already parsed). */
export function mayPublish(permissions: ChannelPermissions, channel: readonly string[]): boolean {
  return permissions.publish.some((pattern) => filterCovers(pattern, channel));
}

/** True when the permissions allow any publish at all; the backend publish API requires one. */
export function mayPublishAnywhere(permissions: ChannelPermissions): boolean {
  return permissions.publish.length > 0;
}
