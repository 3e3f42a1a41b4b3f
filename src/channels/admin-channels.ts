/** First segment of the channels reserved for the admin console, such as `admin/stats`. */
export const adminRootSegment = 'admin';

/** The channel each server publishes its live counts on for the admin console, every 5 s. */
export const adminStatsChannel = 'admin/stats';

/** The scope an admin's browser session carries to subscribe to `admin/stats`. */
export const adminStatsScope = `subscribe:${adminStatsChannel}`;

/** Tells whether a parsed channel name, filter or scope pattern lies in the reserved `admin/` namespace. */
export function isAdminChannel(segments: readonly string[]): boolean {
  return segments[0] === adminRootSegment;
}
