import crypto from 'node:crypto';

/**
 * Encodes a JSON value with an HMAC-SHA256 tag, for short-lived state kept in a cookie. The value is
 * readable by its holder, so it must hold nothing the browser may not see.
 */
export function signValue(key: string, value: unknown): string {
  const body = Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
  const tag = crypto.createHmac('sha256', key).update(body).digest('base64url');
  return `${body}.${tag}`;
}

/** Decodes a value from `signValue`; returns null when the tag does not match or it is not JSON. */
export function verifySignedValue<T>(key: string, signed: string | undefined): T | null {
  if (!signed) {
    return null;
  }

  const separator = signed.lastIndexOf('.');
  if (separator <= 0) {
    return null;
  }

  const body = signed.slice(0, separator);
  const expected = Buffer.from(crypto.createHmac('sha256', key).update(body).digest('base64url'));
  const actual = Buffer.from(signed.slice(separator + 1));
  if (expected.length !== actual.length || !crypto.timingSafeEqual(expected, actual)) {
    return null;
  }

  try {
    return JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as T;
  } catch {
    return null;
  }
}
