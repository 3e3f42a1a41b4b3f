import { PortcullisError, type ErrorCode } from '../errors.ts';
import type { Connection, ConnectionServices } from './connection.ts';
import { boundKeyThumbprint } from './dpop/verifier.ts';
import { boundThumbprint } from './guard/certificate-binding.ts';
import type { VerifiedToken } from './token-verifier.ts';

/** A token sent in band, with the DPoP proof that a DPoP-bound token needs. */
export interface PresentedToken {
  token: string;
  proof: string | null;
}

/**
 * Checks a fresh token sent on an open socket exactly like a handshake token. It must name the same
 * subject and client, so a socket cannot be handed over to another identity. It must also be bound
 * to the same key or certificate as the token it replaces (RFC 9449, RFC 8705), so a bound connection
 * cannot continue with a bearer token. Returns the verified token or the error code that rejects it.
 */
export async function checkReplacementToken(connection: Connection, presented: PresentedToken, services: ConnectionServices): Promise<ErrorCode | VerifiedToken> {
  let verified: VerifiedToken;
  try {
    verified = await services.verifyToken(presented.token);
  } catch (error) {
    return error instanceof PortcullisError ? error.code : 'token_invalid';
  }

  if (verified.sub !== connection.token.sub || verified.clientId !== connection.token.clientId) {
    return 'token_invalid';
  }
  // The connection's TLS session does not change, so a token bound to the same certificate as the
  // first is bound to the one this socket presented.
  if (boundThumbprint(verified) !== boundThumbprint(connection.token)) {
    return 'token_invalid';
  }

  const jkt = boundKeyThumbprint(verified);
  if (jkt !== boundKeyThumbprint(connection.token) || jkt === null) {
    return 'token_invalid';
  }
  if (jkt !== undefined) {
    const rejection = await services.dpop.check(presented.proof === null ? [] : [presented.proof], presented.token, jkt);
    if (rejection) {
      return rejection.code;
    }
  }

  // A browser token is narrowed to the devices its user still owns, as at the handshake.
  return services.admitToken(connection.kind, verified);
}
