import type { HandshakeCheck } from '../handshake.ts';

const credentialParameterNames = new Set(['access_token', 'token', 'jwt', 'auth', 'authorization', 'bearer', 'id_token', 'refresh_token']);

// Three base64url segments, the first starting like a JSON object header ("eyJ").
const jwtLikePattern = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/;

/**
 * Rejects credentials in the URL. URLs end up in proxy logs, browser history and `Referer`
 * headers (RFC 6750 section 5.3), so a token found there is refused even when valid.
 */
export const tokenInUrlCheck: HandshakeCheck = {
  name: 'token_in_url',
  run(state) {
    return urlCarriesCredentials(state.url) ? 'token_in_url' : undefined;
  },
};

/** Tells whether a URL's query or path contains a credential parameter or a JWT-like value. */
export function urlCarriesCredentials(url: URL): boolean {
  for (const [name, value] of url.searchParams) {
    if (credentialParameterNames.has(name.toLowerCase()) || jwtLikePattern.test(value) || jwtLikePattern.test(name)) {
      return true;
    }
  }
  return jwtLikePattern.test(decodeURIComponentSafe(url.pathname));
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
