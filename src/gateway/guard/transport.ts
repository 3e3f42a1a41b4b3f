import type { IncomingMessage } from 'node:http';

import type { HandshakeCheck } from '../handshake.ts';
import { headerValues, isTlsSocket } from '../handshake.ts';

/**
 * Requires TLS on the handshake. Cookies and bearer tokens on a cleartext connection can be read by
 * anyone on the path, so plain `ws://` is refused unless a configured TLS-terminating proxy vouches
 * with `X-Forwarded-Proto: https`.
 */
export function transportCheck(trustedProxies: readonly string[]): HandshakeCheck {
  const arrivedOverTls = createTlsTest(trustedProxies);

  return {
    name: 'transport',
    run(state) {
      return arrivedOverTls(state.request, state.peerAddress) ? undefined : 'tls_required';
    },
  };
}

/**
 * Builds the test that the handshake's transport check and the plain-HTTP listener share. A request
 * passes on a TLS socket, or on a plain socket from an address in `trustedProxies` (exact match, no
 * CIDR ranges) that carries exactly one `X-Forwarded-Proto: https`.
 */
export function createTlsTest(trustedProxies: readonly string[]): (request: IncomingMessage, peerAddress: string) => boolean {
  const trusted = new Set(trustedProxies.map(normalizeAddress));

  return (request, peerAddress) => {
    if (isTlsSocket(request)) {
      return true;
    }

    // A proxy that appends instead of replacing passes the client's own value on as well, so two
    // values are not believed.
    const forwarded = headerValues(request, 'x-forwarded-proto');
    return trusted.has(normalizeAddress(peerAddress)) && forwarded.length === 1 && forwarded[0].trim().toLowerCase() === 'https';
  };
}

/** Converts an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) to its IPv4 form and returns other addresses unchanged. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
}
