import type { FastifyRequest } from 'fastify';

import { gatewayClientId } from '../auth/provider.ts';
import { PortcullisError, type ErrorCode } from '../errors.ts';
import { findRevocation } from '../gateway/guard/revocation.ts';
import { urlCarriesCredentials } from '../gateway/guard/token-in-url.ts';
import type { VerifiedToken } from '../gateway/token-verifier.ts';
import type { WebContext } from './context.ts';

/**
 * Returns the token of the request's `Authorization: Bearer` header, or null without the header.
 * Throws `ambiguous_credentials` for repeated headers and `token_invalid` for a malformed one.
 */
export function bearerToken(request: FastifyRequest): string | null {
  // Node keeps only the first of repeated Authorization headers, so they are counted in the raw list,
  // as the handshake does.
  const headers = request.raw.rawHeaders.filter((_value, index, raw) => index % 2 === 0 && raw[index].toLowerCase() === 'authorization');
  if (headers.length > 1) {
    throw new PortcullisError('ambiguous_credentials');
  }
  const header = request.headers.authorization;
  if (header === undefined) {
    return null;
  }

  // RFC 6750 section 2.1 defines the header. A malformed one counts as a bad token, as in the handshake.
  const match = /^Bearer +([^ ]+) *$/i.exec(header);
  if (!match) {
    throw new PortcullisError('token_invalid');
  }
  return match[1];
}

/**
 * Verifies the bearer access token of an HTTP API request (`POST /api/publish`, `GET /metrics`) and
 * returns it. Throws `token_in_url`, `token_missing`, a token error or a revocation code.
 */
export async function verifyBearerCaller(context: Pick<WebContext, 'store' | 'verifyToken' | 'revocationScope'>, request: FastifyRequest): Promise<VerifiedToken> {
  // RFC 6750 section 5.3: a token in the URL ends up in logs and browser history. The same rule as
  // the handshake's, so every endpoint rejects the same URLs.
  if (urlCarriesCredentials(new URL(request.url, 'https://portcullis.invalid'))) {
    throw new PortcullisError('token_in_url');
  }

  const token = bearerToken(request);
  if (!token) {
    throw new PortcullisError('token_missing');
  }

  const verified = await context.verifyToken(token);
  // A browser session token belongs behind the cookie with its Origin and CSRF checks.
  if (verified.clientId === gatewayClientId) {
    throw new PortcullisError('token_invalid');
  }

  const revocation = await findRevocation(context.store, 'device', verified, context.revocationScope);
  if (revocation) {
    throw new PortcullisError(revocation);
  }
  return verified;
}

/** Returns the `WWW-Authenticate` value for a rejected bearer token (RFC 6750 section 3), if the code has one. */
export function challengeFor(code: ErrorCode): string | undefined {
  if (code === 'token_missing') {
    return 'Bearer';
  }
  if (code === 'token_invalid' || code === 'token_expired') {
    return 'Bearer error="invalid_token"';
  }
  if (code === 'forbidden') {
    return 'Bearer error="insufficient_scope"';
  }
  return undefined;
}
