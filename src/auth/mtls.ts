import type { TLSSocket } from 'node:tls';

import type { Configuration, KoaContextWithOIDC } from 'oidc-provider';

import type { Options } from '../config/options.ts';
import { createClientCertificateReader } from '../gateway/client-certificate.ts';
import { issuingCa, readCaBundle, subjectDn } from '../tls/client-ca.ts';

/** Token endpoint authentication methods of RFC 8705 section 2 that `mtlsFeature` turns on; none without `tlsClientCaFile`. */
export function mtlsClientAuthMethods(options: Readonly<Options>): string[] {
  return options.tlsClientCaFile === null ? [] : ['tls_client_auth', 'self_signed_tls_client_auth'];
}

/**
 * Builds the auth server's mutual-TLS settings (RFC 8705), enabled only with `tlsClientCaFile`.
 * Clients authenticate by a certificate that a CA of that bundle signed (`tls_client_auth`) or by a
 * registered self-signed certificate (`self_signed_tls_client_auth`). Clients registered with
 * `tls_client_certificate_bound_access_tokens` get access tokens bound to the certificate
 * (`cnf.x5t#S256`). Token requests use the normal token endpoint on the HTTPS port, which requests
 * a certificate from every client. The bundle is read once here, so a changed bundle takes effect at
 * the next start.
 */
export function mtlsFeature(options: Readonly<Options>): NonNullable<Configuration['features']>['mTLS'] {
  if (options.tlsClientCaFile === null) {
    return { enabled: false };
  }

  const bundle = readCaBundle(options.tlsClientCaFile);
  const readCertificate = createClientCertificateReader({ trustedProxies: options.trustedProxies, header: options.tlsClientCertHeader });
  const presented = (ctx: KoaContextWithOIDC) => readCertificate(ctx.req);

  return {
    enabled: true,
    certificateBoundAccessTokens: true,
    tlsClientAuth: true,
    selfSignedTlsClientAuth: true,
    getCertificate: (ctx) => presented(ctx)?.certificate,
    certificateAuthorized(ctx) {
      const client = presented(ctx);
      if (!client) {
        return false;
      }
      // OpenSSL checked the chain that the client sent against the bundle during the handshake. A
      // proxy forwards the device certificate alone, so that one must be issued by a CA of the bundle.
      if (client.source === 'tls') {
        return (ctx.req.socket as TLSSocket).authorized === true;
      }
      return issuingCa(client.certificate, bundle) !== undefined;
    },
    certificateSubjectMatches(ctx, property, expected) {
      const client = presented(ctx);
      // Devices are registered by subject DN only, so any other property never matches.
      return client !== null && property === 'tls_client_auth_subject_dn' && subjectDn(client.certificate) === expected;
    },
  };
}
