import type { Configuration } from 'oidc-provider';

import type { Options } from '../config/options.ts';

/**
 * The auth server's mutual-TLS settings (RFC 8705): client authentication by certificate and
 * certificate-bound access tokens.
 * TODO: filled in with the certificate-bound token work.
 */
export function mtlsFeature(_options: Readonly<Options>): NonNullable<Configuration['features']>['mTLS'] {
  return { enabled: false };
}
