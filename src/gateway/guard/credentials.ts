import { headerValues, sessionCookieName, type HandshakeCheck, type HandshakeState } from '../handshake.ts';

/** Returns the values of every session cookie in the request's `Cookie` headers. */
export function sessionCookieValues(state: HandshakeState): string[] {
  const values: string[] = [];
  for (const header of headerValues(state.request, 'cookie')) {
    for (const pair of header.split(';')) {
      const separator = pair.indexOf('=');
      if (separator === -1 || pair.slice(0, separator).trim() !== sessionCookieName) {
        continue;
      }
      values.push(pair.slice(separator + 1).trim());
    }
  }
  return values;
}

/**
 * Decides which path the handshake takes. A session cookie means a browser, an `Authorization`
 * header a device. Both at once, or two cookies, are refused so no check can be dodged by sending
 * one credential to it and another to the next check.
 */
export const credentialsCheck: HandshakeCheck = {
  name: 'credentials',
  run(state) {
    const cookies = sessionCookieValues(state);
    const authorizations = headerValues(state.request, 'authorization');

    if (cookies.length > 1 || authorizations.length > 1) {
      return 'ambiguous_credentials';
    }
    if (cookies.length === 1 && authorizations.length === 1) {
      return 'ambiguous_credentials';
    }

    if (cookies.length === 1) {
      state.kind = 'browser';
      state.scheme = null;
      state.token = cookies[0] === '' ? null : cookies[0];
      return state.token ? undefined : 'token_missing';
    }

    state.kind = 'device';
    if (authorizations.length === 0) {
      return 'token_missing';
    }

    // RFC 9449 section 7.1: a DPoP-bound token travels under its own scheme, with its proof in the
    // `DPoP` header.
    const match = /^(Bearer|DPoP) +([^ ]+) *$/i.exec(authorizations[0]);
    if (!match) {
      return 'token_invalid';
    }
    state.scheme = match[1].toLowerCase() === 'dpop' ? 'dpop' : 'bearer';
    state.token = match[2];
    return undefined;
  },
};
