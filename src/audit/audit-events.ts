/**
 * The fields the audit trail stores for each security event, by event name. Only these fields are
 * stored, and none of them contains a token, cookie, secret or password. An event missing here is not
 * stored at all. `actor` is set by management commands to `cli:<operating-system user>`.
 */
export const auditedFields: Readonly<Record<string, readonly string[]>> = Object.freeze({
  // Written by a server, through its logger's event tap.
  'login.succeeded': ['username', 'ip'],
  'login.failed': ['username', 'ip'],
  'login.throttled': ['username', 'ip'],
  'session.created': ['sub', 'grant_id'],
  'session.revoked': ['sub', 'grant_id', 'connection_id', 'reason', 'actor'],
  'token.issued': ['client_id', 'grant_type'],
  'token.rejected': ['client_id', 'error'],
  'refresh_token.rotated': ['client_id', 'grant_id'],
  'refresh_token.reused': ['client_id', 'grant_id'],
  'refresh_token.misused': ['client_id', 'grant_client_id', 'grant_id'],
  'grant.revoked': ['client_id', 'grant_id'],
  'handshake.rejected': ['code', 'detail', 'origin', 'client_id', 'ip', 'path'],
  'connection.expired': ['connection_id', 'sub', 'client_id'],
  'connection.revoked': ['connection_id', 'sub', 'client_id', 'reason'],
  // Actions taken in the admin console; `admin` is the username of the admin who acted.
  'admin.session_revoked': ['admin', 'connection_id', 'grant_id'],
  'admin.device_disabled': ['admin', 'client_id'],
  'admin.user_disabled': ['admin', 'username'],

  // Written by the management commands that change security state.
  'device.added': ['client_id', 'auth_method', 'owner', 'scope', 'actor'],
  'device.removed': ['client_id', 'actor'],
  'device_code.approved': ['client_id', 'username', 'grant_id', 'actor'],
  'user.added': ['username', 'admin', 'actor'],
  'user.password_changed': ['username', 'revoked_grants', 'actor'],
  'user.disabled': ['username', 'actor'],
  'user.enabled': ['username', 'actor'],
  'user.admin_granted': ['username', 'actor'],
  'user.admin_withdrawn': ['username', 'revoked_grants', 'actor'],
  'key.rotated': ['kid', 'actor'],
});

/**
 * Events a server logs but does not store, because the management command behind them stores them.
 * Every server logs `key.rotated` when it loads a new key, so a cluster would store one rotation
 * once per node. `portcullis keys rotate` stores it once instead.
 */
export const commandOnlyEvents: ReadonlySet<string> = new Set(['key.rotated']);

// Longer values are cut, so that a client cannot fill the table through a header it controls.
const maxValueLength = 200;

/** Tells whether the audit trail stores `event`. */
export function isAuditedEvent(event: string): boolean {
  return Object.hasOwn(auditedFields, event);
}

/**
 * Picks the allow-listed fields of `event` out of `fields`. Strings longer than 200 characters are
 * cut, and values other than strings, finite numbers and booleans are left out.
 */
export function pickAuditedFields(event: string, fields: Readonly<Record<string, unknown>>): Record<string, string | number | boolean> {
  const picked: Record<string, string | number | boolean> = {};
  for (const name of auditedFields[event] ?? []) {
    const value = fields[name];
    if (typeof value === 'string') {
      picked[name] = value.slice(0, maxValueLength);
    } else if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean') {
      picked[name] = value;
    }
  }
  return picked;
}
