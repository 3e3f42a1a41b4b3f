import type { HandshakeCheck } from '../handshake.ts';
import { headerValues, isTlsSocket } from '../handshake.ts';

/**
 * Requires TLS on the handshake. Cookies and bearer tokens on a cleartext connection can be read by
 * anyone on the path, so plain `ws://` is refused unless a configured TLS-terminating proxy vouches
 * with `X-Forwarded-Proto: https`.
 */
export function transportCheck(trustedProxies: readonly string[]): HandshakeCheck {
  const trusted = new Set(trustedProxies.map(normalizeAddress));

  return {
    name: 'transport',
    run(state) {
      if (isTlsSocket(state.request)) {
        return undefined;
      }

      const forwarded = headerValues(state.request, 'x-forwarded-proto');
      if (trusted.has(normalizeAddress(state.peerAddress)) && forwarded.length === 1 && forwarded[0].trim().toLowerCase() === 'https') {
        return undefined;
      }
      return 'tls_required';
    },
  };
}

/** Converts an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) to its IPv4 form and returns other addresses unchanged. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
}
