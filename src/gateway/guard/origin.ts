import type { HandshakeCheck } from '../handshake.ts';
import { headerValues } from '../handshake.ts';

/**
 * Requires a browser handshake to come from an allowed origin. Browsers attach cookies to
 * cross-site WebSocket handshakes and apply no CORS to them, so without this check any page could
 * open a socket with the user's session (cross-site WebSocket hijacking). Devices send no cookie and
 * skip it.
 */
export function originCheck(allowedOrigins: readonly string[]): HandshakeCheck {
  const allowed = new Set(allowedOrigins);

  return {
    name: 'origin',
    run(state) {
      if (state.kind !== 'browser') {
        return undefined;
      }

      const origins = headerValues(state.request, 'origin');
      if (origins.length !== 1) {
        return 'origin_not_allowed';
      }
      return allowed.has(serializeOrigin(origins[0])) ? undefined : 'origin_not_allowed';
    },
  };
}

/** Serialises an `Origin` header the way the URL standard does; `null` and junk become an empty string. */
export function serializeOrigin(header: string): string {
  const value = header.trim();
  if (value === '' || value === 'null') {
    return '';
  }

  try {
    const url = new URL(value);
    // An Origin header contains scheme, host and port only, so anything more is not a real origin.
    if (url.origin === 'null' || value.endsWith('/') || url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
      return '';
    }
    return url.origin;
  } catch {
    return '';
  }
}
