import crypto, { type X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

import { parseCertificate, pemBlocks } from '../tls/client-ca.ts';
import { headerValues, isTlsSocket } from './handshake.ts';
import { normalizeAddress } from './guard/transport.ts';

/** The client certificate of one request and where it came from. */
export interface ClientCertificate {
  certificate: X509Certificate;
  /** `x5t#S256` of RFC 8705 section 3.1: the base64url SHA-256 of the DER certificate. */
  thumbprint: string;
  /** `tls` when this server's TLS handshake received it, `proxy` when a trusted proxy forwarded it. */
  source: 'tls' | 'proxy';
}

/** Sources of client certificates that a reader believes. */
export interface ClientCertificateSource {
  /** Peer addresses that may forward a certificate in `header` (exact match, like `--trusted-proxy`). */
  trustedProxies: readonly string[];
  /** Lower-case name of the header in which a trusted TLS-terminating proxy forwards the certificate; null for none. */
  header: string | null;
}

/** Computes the `x5t#S256` thumbprint of a certificate (RFC 8705 section 3.1). */
export function certificateThumbprint(certificate: X509Certificate): string {
  return crypto.hash('sha256', certificate.raw, 'base64url');
}

/**
 * Creates the one reader of client certificates that the auth server and the gateway share. A
 * request from a trusted proxy takes its certificate from `header` only, because the proxy ended
 * the client's TLS and any certificate on the socket is the proxy's own. Any other request takes it
 * from this server's TLS handshake, and its copy of the header is ignored, since anyone can send
 * that header. Returns null when the request carries no certificate.
 */
export function createClientCertificateReader(source: ClientCertificateSource): (request: IncomingMessage) => ClientCertificate | null {
  const trusted = new Set(source.trustedProxies.map(normalizeAddress));
  // oidc-provider reads the certificate several times during one token request.
  const read = new WeakMap<IncomingMessage, ClientCertificate | null>();

  return (request) => {
    const cached = read.get(request);
    if (cached !== undefined) {
      return cached;
    }

    const fromProxy = source.header !== null && trusted.has(normalizeAddress(request.socket.remoteAddress ?? ''));
    const certificate = fromProxy ? forwardedCertificate(request, source.header!) : handshakeCertificate(request);
    const result = certificate ? { certificate, thumbprint: certificateThumbprint(certificate), source: fromProxy ? 'proxy' as const : 'tls' as const } : null;
    read.set(request, result);
    return result;
  };
}

function handshakeCertificate(request: IncomingMessage): X509Certificate | undefined {
  if (!isTlsSocket(request)) {
    return undefined;
  }
  return (request.socket as TLSSocket).getPeerX509Certificate();
}

// A proxy that appends instead of replacing would pass on a client's own header line as well, so
// more than one line is not believed.
function forwardedCertificate(request: IncomingMessage, header: string): X509Certificate | undefined {
  const values = headerValues(request, header);
  if (values.length !== 1) {
    return undefined;
  }
  return parseForwardedCertificate(values[0]);
}

/**
 * Parses a forwarded client certificate in either form that proxies send: RFC 9440's `Client-Cert`
 * value, a structured-field byte sequence (`:base64-DER:`), or nginx's `$ssl_client_escaped_cert`,
 * a URL-encoded PEM certificate. Returns undefined for an empty or malformed value.
 */
export function parseForwardedCertificate(value: string): X509Certificate | undefined {
  const text = value.trim();
  const byteSequence = /^:([A-Za-z0-9+/]+={0,2}):$/.exec(text);
  if (byteSequence) {
    return parseCertificate(Buffer.from(byteSequence[1], 'base64'));
  }

  let pem: string;
  try {
    pem = decodeURIComponent(text);
  } catch {
    return undefined;
  }
  const blocks = pemBlocks(pem);
  if (blocks.length !== 1 || blocks[0].label !== 'CERTIFICATE') {
    return undefined;
  }
  return parseCertificate(blocks[0].der);
}
