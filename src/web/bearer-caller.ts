import type { IncomingMessage } from 'node:http';

import type { FastifyRequest } from 'fastify';

import { dpopAlgorithms } from '../auth/dpop.ts';
import { gatewayClientId } from '../auth/provider.ts';
import { PortcullisError, type ErrorCode } from '../errors.ts';
import type { Options } from '../config/options.ts';
import { createClientCertificateReader, type ClientCertificate } from '../gateway/client-certificate.ts';
import { boundKeyThumbprint } from '../gateway/dpop/verifier.ts';
import { boundThumbprint } from '../gateway/guard/certificate-binding.ts';
import { findRevocation } from '../gateway/guard/revocation.ts';
import { headerValues } from '../gateway/handshake.ts';
import { urlCarriesCredentials } from '../gateway/guard/token-in-url.ts';
import type { VerifiedToken } from '../gateway/token-verifier.ts';
import type { WebContext } from './context.ts';

/** An access token from the `Authorization` header, with its scheme. */
export interface PresentedToken {
  scheme: 'bearer' | 'dpop';
  token: string;
}

/**
 * Returns the token of the request's `Authorization: Bearer` or `Authorization: DPoP` header, or
 * null without the header. Throws `ambiguous_credentials` for repeated headers and `token_invalid`
 * for a malformed one.
 */
export function presentedToken(request: FastifyRequest): PresentedToken | null {
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

  // RFC 6750 section 2.1 and RFC 9449 section 7.1 define the header. A malformed one counts as a bad
  // token, as in the handshake.
  const match = /^(Bearer|DPoP) +([^ ]+) *$/i.exec(header);
  if (!match) {
    throw new PortcullisError('token_invalid');
  }
  return { scheme: match[1].toLowerCase() === 'dpop' ? 'dpop' : 'bearer', token: match[2] };
}

/**
 * Verifies the access token of an HTTP API request (`POST /api/publish`, `GET /metrics`) and returns
 * it. A DPoP-bound token needs the `DPoP` scheme and a proof for this request. Throws `token_in_url`,
 * `token_missing`, a token error, `invalid_dpop_proof` or a revocation code.
 */
export async function verifyBearerCaller(context: Pick<WebContext, 'store' | 'verifyToken' | 'revocationScope' | 'dpop' | 'options'>, request: FastifyRequest): Promise<VerifiedToken> {
  // RFC 6750 section 5.3: a token in the URL ends up in logs and browser history. The same rule as
  // the handshake's, so every endpoint rejects the same URLs.
  if (urlCarriesCredentials(new URL(request.url, 'https://portcullis.invalid'))) {
    throw new PortcullisError('token_in_url');
  }

  const presented = presentedToken(request);
  if (!presented) {
    throw new PortcullisError('token_missing');
  }

  const verified = await context.verifyToken(presented.token);
  await checkProofOfPossession(context, request, presented, verified);
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

// The rules of the handshake's `dpop_proof` and `certificate_binding` checks, with this request's
// method and URL as `htm` and `htu`.
async function checkProofOfPossession(context: Pick<WebContext, 'dpop' | 'options'>, request: FastifyRequest, presented: PresentedToken, verified: VerifiedToken): Promise<void> {
  const x5t = boundThumbprint(verified);
  if (x5t !== undefined && (x5t === null || certificateReaderOf(context.options)(request.raw)?.thumbprint !== x5t)) {
    throw new PortcullisError('certificate_mismatch');
  }

  const jkt = boundKeyThumbprint(verified);
  if (presented.scheme === 'bearer') {
    if (jkt !== undefined) {
      throw new PortcullisError('token_invalid');
    }
    return;
  }
  if (!jkt) {
    throw new PortcullisError('token_invalid');
  }

  const htu = `${context.options.publicUrl}${request.url.split('?')[0]}`;
  const rejection = await context.dpop.check(headerValues(request.raw, 'dpop'), presented.token, jkt, { htm: request.method, htu });
  if (rejection) {
    throw new PortcullisError(rejection.code);
  }
}

// One reader per server, so its per-request cache is shared by the routes.
const certificateReaders = new WeakMap<Readonly<Options>, (request: IncomingMessage) => ClientCertificate | null>();

function certificateReaderOf(options: Readonly<Options>): (request: IncomingMessage) => ClientCertificate | null {
  let reader = certificateReaders.get(options);
  if (!reader) {
    reader = createClientCertificateReader({ trustedProxies: options.trustedProxies, header: options.tlsClientCertHeader });
    certificateReaders.set(options, reader);
  }
  return reader;
}

/**
 * Returns the `WWW-Authenticate` value for a rejected token (RFC 6750 section 3, RFC 9449 section
 * 7.1), if the code has one.
 */
export function challengeFor(code: ErrorCode): string | undefined {
  if (code === 'invalid_dpop_proof') {
    return `DPoP error="invalid_dpop_proof", algs="${dpopAlgorithms.join(' ')}"`;
  }
  if (code === 'token_missing') {
    return 'Bearer';
  }
  if (code === 'token_invalid' || code === 'token_expired' || code === 'certificate_mismatch') {
    return 'Bearer error="invalid_token"';
  }
  if (code === 'forbidden') {
    return 'Bearer error="insufficient_scope"';
  }
  return undefined;
}
