/** Maximum number of segments in a channel name or pattern. */
export const maxChannelSegments = 8;

/** Maximum length of a channel name or pattern in bytes. Names are ASCII, so bytes equal characters. */
export const maxChannelBytes = 200;

/** One segment wildcard in a subscription filter or permission pattern. */
export const anySegment = '*';

/** Trailing wildcard: zero or more remaining segments. */
export const anyRest = '#';

const segmentPattern = /^[a-z0-9_-]+$/;

/** True when `value` is a valid channel segment: one or more of `[a-z0-9_-]`. */
export function isChannelSegment(value: string): boolean {
  return segmentPattern.test(value);
}

function splitBounded(value: unknown): string[] | null {
  if (typeof value !== 'string' || value.length === 0 || value.length > maxChannelBytes) {
    return null;
  }
  const segments = value.split('/');
  return segments.length <= maxChannelSegments ? segments : null;
}

/** Splits a concrete channel name such as `devices/sensor-1/telemetry`, or returns null. */
export function parseChannelName(value: unknown): string[] | null {
  const segments = splitBounded(value);
  if (!segments || !segments.every(isChannelSegment)) {
    return null;
  }
  return segments;
}

/**
 * Splits a channel filter, which may use `*` for one segment and a final `#` for any rest, or
 * returns null. Subscriptions and permission patterns share this syntax.
 */
export function parseChannelFilter(value: unknown): string[] | null {
  const segments = splitBounded(value);
  if (!segments) {
    return null;
  }

  const last = segments.length - 1;
  const valid = segments.every((segment, index) => segment === anySegment
    || (segment === anyRest && index === last)
    || isChannelSegment(segment));
  return valid ? segments : null;
}

/**
 * True when every channel that `filter` matches is also matched by `pattern`. A concrete channel
 * name is a filter that matches only itself, so this also decides whether a publish is allowed.
 */
export function filterCovers(pattern: readonly string[], filter: readonly string[]): boolean {
  for (let index = 0; index < pattern.length; index += 1) {
    const expected = pattern[index];
    if (expected === anyRest) {
      return true;
    }

    const actual = filter[index];
    if (actual === undefined || actual === anyRest) {
      return false;
    }
    if (expected !== anySegment && expected !== actual) {
      return false;
    }
  }
  return filter.length === pattern.length;
}
