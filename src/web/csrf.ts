import crypto from 'node:crypto';

const csrfContext = 'portcullis-csrf-v1:';

/**
 * Derives the CSRF token of a browser session: an HMAC-SHA256 of the session's grant id under a
 * server key, so it needs no storage and cannot be moved to another session.
 */
export function csrfTokenFor(csrfKey: string, grantId: string): string {
  return crypto.createHmac('sha256', csrfKey).update(csrfContext + grantId, 'utf8').digest('base64url');
}

/** Compares a presented CSRF token with the session's expected one in constant time. */
export function csrfTokenMatches(csrfKey: string, grantId: string, presented: string | undefined): boolean {
  if (!presented) {
    return false;
  }
  const expected = Buffer.from(csrfTokenFor(csrfKey, grantId), 'utf8');
  const actual = Buffer.from(presented, 'utf8');
  return expected.length === actual.length && crypto.timingSafeEqual(expected, actual);
}
