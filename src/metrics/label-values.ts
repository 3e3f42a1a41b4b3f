import { closeCodes, errorCatalogue } from '../errors.ts';

// Every label value makes a time series of its own, and several values come from the client (a
// grant_type parameter, a peer's close code). Each value is checked against a closed set, so a client
// cannot grow the scrape without bound; anything else becomes `other`.

/** Label value for anything outside the known set. */
export const otherLabel = 'other';

const grantTypes = new Set([
  'authorization_code',
  'client_credentials',
  'refresh_token',
  'urn:ietf:params:oauth:grant-type:device_code',
]);

// RFC 6749 section 5.2 and RFC 8628 section 3.5 error codes, and those oidc-provider adds.
const oauthErrors = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type',
  'invalid_scope', 'invalid_target', 'authorization_pending', 'slow_down', 'access_denied', 'expired_token',
  'temporarily_unavailable', 'server_error', 'invalid_dpop_proof', 'use_dpop_nonce',
]);

// RFC 6455 section 7.4.1 codes a peer may send or ws reports, plus the codes Portcullis sends.
const knownCloseCodes = new Set<number>([1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015, ...Object.values(closeCodes)]);

/** Returns the OAuth grant type, or `other` for a value a client made up. */
export function grantTypeLabel(value: unknown): string {
  return typeof value === 'string' && grantTypes.has(value) ? value : otherLabel;
}

/** Returns the OAuth error code of a rejected token request, or `other`. */
export function oauthErrorLabel(value: unknown): string {
  return typeof value === 'string' && oauthErrors.has(value) ? value : otherLabel;
}

/** Returns a catalogue error code, or `other`. */
export function errorCodeLabel(value: unknown): string {
  return typeof value === 'string' && Object.hasOwn(errorCatalogue, value) ? value : otherLabel;
}

/** Returns a WebSocket close code as text, or `other` for a code outside the known set. */
export function closeCodeLabel(value: unknown): string {
  return typeof value === 'number' && knownCloseCodes.has(value) ? String(value) : otherLabel;
}

/**
 * Returns a short snake_case word such as a revocation reason, or `other`. Reasons come from this
 * code base, but ones announced over Redis arrive from other nodes, so they are checked too.
 */
export function reasonLabel(value: unknown): string {
  return typeof value === 'string' && /^[a-z][a-z0-9_]{0,39}$/.test(value) ? value : otherLabel;
}
