import { headerValues, type HandshakeCheck } from '../handshake.ts';

// RFC 6455 section 4.1: the key is 16 random bytes in base64, so exactly 24 characters.
const websocketKeyPattern = /^[A-Za-z0-9+/]{22}==$/;

/**
 * Checks that the request is a well-formed RFC 6455 version 13 upgrade before any credential is
 * read, so malformed handshakes get a JSON error instead of reaching `ws`.
 */
export const websocketRequestCheck: HandshakeCheck = {
  name: 'websocket_request',
  run(state) {
    const { request } = state;
    const upgrade = request.headers.upgrade;
    if (request.method !== 'GET' || typeof upgrade !== 'string' || upgrade.toLowerCase() !== 'websocket') {
      return 'upgrade_required';
    }

    // RFC 6455 section 4.1 requires HTTP/1.1 and Host, and RFC 9112 section 3.2 exactly one Host.
    // Node no longer refuses a request without it (see src/web/node-defaults.ts), so the guard does.
    if (request.httpVersion !== '1.1' || headerValues(request, 'host').length !== 1) {
      return 'bad_handshake';
    }

    const versions = headerValues(request, 'sec-websocket-version');
    if (versions.length !== 1 || versions[0].trim() !== '13') {
      return 'bad_handshake';
    }

    const keys = headerValues(request, 'sec-websocket-key');
    if (keys.length !== 1 || !websocketKeyPattern.test(keys[0].trim())) {
      return 'bad_handshake';
    }
    return undefined;
  },
};
