import type { JWK } from 'jose';
import type { Logger } from 'pino';

import { gatewayAudience } from '../auth/provider.ts';
import type { Options } from '../config/options.ts';
import { localIssuerKeys, remoteIssuerKeys, type IssuerKeys } from './issuer-keys.ts';
import { createTokenVerifier, type VerifiedToken } from './token-verifier.ts';

/** The access-token verification settings of this process, derived from its options. */
export interface TokenTrust {
  /** True when the tokens come from the built-in auth server on the shared store, false with `--issuer`. */
  builtInIssuer: boolean;
  audience: string;
  issuerKeys: IssuerKeys;
  verifyToken: (token: string) => Promise<VerifiedToken>;
  /** Like `verifyToken`, with `extraLeewaySeconds` more leeway on `exp`. */
  verifyWithGrace: (extraLeewaySeconds: number) => (token: string) => Promise<VerifiedToken>;
}

/**
 * Builds the token verifier. Without `--issuer` it trusts the built-in auth server: its keys from
 * the store, ES256, `at+jwt`, RFC 9068 claims. With `--issuer` it trusts only that issuer, through
 * its JWKS and the configured audience, algorithms and claim names.
 */
export function buildTokenTrust(options: Readonly<Options>, localKeys: () => JWK[], logger: Logger): TokenTrust {
  const external = options.issuer !== null && options.audience !== null;
  const issuerKeys = external
    ? remoteIssuerKeys({ issuer: options.issuer!, jwksUrl: options.jwksUrl, caFile: options.issuerCaFile, logger })
    : localIssuerKeys(localKeys);

  const verifierOptions = external
    ? {
        issuer: options.issuer!,
        audience: options.audience!,
        algorithms: options.tokenAlgorithms,
        acceptJwtType: options.acceptJwtType,
        clientIdClaim: options.clientIdClaim,
        scopeClaim: options.scopeClaim,
        tokenIdClaim: options.tokenIdClaim,
      }
    : {
        issuer: options.publicUrl,
        audience: gatewayAudience(options),
        algorithms: ['ES256'],
        acceptJwtType: false,
        clientIdClaim: 'client_id',
        scopeClaim: 'scope',
        tokenIdClaim: 'jti',
      };

  const verifyWithGrace = (extraLeewaySeconds: number) => createTokenVerifier({
    ...verifierOptions,
    getKey: issuerKeys.getKey,
    // The built-in keys change only by rotation. A remote set is not watched, because a careful
    // issuer keeps a retired key published until the tokens it signed have expired.
    keysVersion: external ? undefined : localKeys,
    clockLeewaySeconds: options.clockLeewaySeconds + extraLeewaySeconds,
  });

  return {
    builtInIssuer: !external,
    audience: verifierOptions.audience,
    issuerKeys,
    verifyToken: verifyWithGrace(0),
    verifyWithGrace,
  };
}
