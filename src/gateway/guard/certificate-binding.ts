import type { HandshakeCheck } from '../handshake.ts';

/**
 * Accepts a certificate-bound token (RFC 8705, `cnf.x5t#S256`) only on a connection that presents
 * the same client certificate.
 * TODO: filled in with the certificate-bound token work.
 */
export function certificateBindingCheck(_trustedProxies: readonly string[]): HandshakeCheck {
  return {
    name: 'certificate_binding',
    run() {
      return undefined;
    },
  };
}
