import { createClientCertificateReader, type ClientCertificateSource } from '../client-certificate.ts';
import type { HandshakeCheck } from '../handshake.ts';
import type { VerifiedToken } from '../token-verifier.ts';

/**
 * Accepts a certificate-bound token (RFC 8705 section 3, `cnf.x5t#S256`) only on a connection that
 * presents the same client certificate: on this server's TLS handshake, or forwarded by a trusted
 * proxy in `source.header`. A token without `cnf.x5t#S256` passes. A stolen bound token is useless
 * without the private key of its certificate.
 */
export function certificateBindingCheck(source: ClientCertificateSource): HandshakeCheck {
  const readCertificate = createClientCertificateReader(source);

  return {
    name: 'certificate_binding',
    run(state) {
      const expected = boundThumbprint(state.verified);
      if (expected === undefined) {
        return undefined;
      }

      const presented = readCertificate(state.request);
      return presented !== null && presented.thumbprint === expected ? undefined : 'certificate_mismatch';
    },
  };
}

/**
 * Returns the `cnf.x5t#S256` of a token, undefined for a token that is not certificate-bound, or
 * null for a confirmation member that is not a string, which no certificate can satisfy.
 */
export function boundThumbprint(token: VerifiedToken | null): string | null | undefined {
  const confirmation = token?.payload.cnf;
  if (confirmation === null || typeof confirmation !== 'object' || !('x5t#S256' in confirmation)) {
    return undefined;
  }
  const thumbprint = (confirmation as Record<string, unknown>)['x5t#S256'];
  return typeof thumbprint === 'string' ? thumbprint : null;
}
