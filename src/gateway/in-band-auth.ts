import { PortcullisError, type ErrorCode } from '../errors.ts';
import type { Connection, ConnectionServices } from './connection.ts';
import type { VerifiedToken } from './token-verifier.ts';

/**
 * Checks a fresh token sent on an open socket exactly like a handshake token. It must name the same
 * subject and client, so a socket cannot be handed over to another identity. Returns the verified
 * token or the error code that refuses it.
 */
export async function checkReplacementToken(connection: Connection, presented: string, services: ConnectionServices): Promise<ErrorCode | VerifiedToken> {
  let verified: VerifiedToken;
  try {
    verified = await services.verifyToken(presented);
  } catch (error) {
    return error instanceof PortcullisError ? error.code : 'token_invalid';
  }

  if (verified.sub !== connection.token.sub || verified.clientId !== connection.token.clientId) {
    return 'token_invalid';
  }
  // A browser token is narrowed to the devices its user still owns, as at the handshake.
  return services.admitToken(connection.kind, verified);
}
