import { parseCookie, stringifySetCookie } from 'cookie';

import { sessionCookieName } from '../gateway/handshake.ts';

/** Cookie holding the PKCE verifier and state between `/login` and its callback. */
export const loginStateCookieName = '__Host-portcullis-login';

/** Reads one cookie from a `Cookie` header; undefined when absent. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) {
    return undefined;
  }
  return parseCookie(header)[name];
}

/**
 * Builds the session cookie: `Secure`, `HttpOnly` so page scripts cannot read the token,
 * `SameSite=Strict`, and the `__Host-` prefix, which forbids a `Domain` and requires `Path=/`.
 */
export function sessionCookie(token: string, maxAgeSeconds: number): string {
  return stringifySetCookie({
    name: sessionCookieName,
    value: token,
    secure: true,
    httpOnly: true,
    sameSite: 'strict',
    path: '/',
    maxAge: Math.max(0, Math.floor(maxAgeSeconds)),
  });
}

/** Builds the short-lived login-state cookie; `Lax` because the callback arrives by redirect. */
export function loginStateCookie(value: string, maxAgeSeconds: number): string {
  return stringifySetCookie({
    name: loginStateCookieName,
    value,
    secure: true,
    httpOnly: true,
    sameSite: 'lax',
    path: '/',
    maxAge: maxAgeSeconds,
  });
}

/** Builds a `Set-Cookie` that deletes a cookie set by the functions above. */
export function expiredCookie(name: string): string {
  return stringifySetCookie({ name, value: '', secure: true, httpOnly: true, sameSite: 'strict', path: '/', maxAge: 0 });
}
