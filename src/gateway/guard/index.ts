import type { Store } from '../../store/database.ts';
import type { HandshakeCheck, HandshakeState } from '../handshake.ts';
import { PortcullisError, type ErrorCode } from '../../errors.ts';
import type { VerifiedToken } from '../token-verifier.ts';
import { accessTokenCheck } from './access-token.ts';
import { clientIdCheck } from './client-id.ts';
import { credentialsCheck } from './credentials.ts';
import { csrfCheck } from './csrf.ts';
import { originCheck } from './origin.ts';
import { revocationCheck } from './revocation.ts';
import { subprotocolCheck } from './subprotocol.ts';
import { tokenInUrlCheck } from './token-in-url.ts';
import { transportCheck } from './transport.ts';
import { websocketRequestCheck } from './websocket-request.ts';

/** Inputs of the handshake guard. */
export interface GuardInit {
  store: Store;
  verifyToken: (token: string) => Promise<VerifiedToken>;
  /** False with `--issuer`: browsers need the built-in auth server, and devices need no registration. */
  builtInIssuer: boolean;
  gatewayClientId: string;
  csrfKey: string;
  allowedOrigins: readonly string[];
  trustedProxies: readonly string[];
}

/**
 * Builds the ordered handshake checks. Cheap checks that need no secret come first. Origin comes
 * before the token, so a cross-site page learns nothing about the victim's session. Revocation needs
 * the verified token and comes last.
 */
export function buildHandshakeChecks(init: GuardInit): HandshakeCheck[] {
  return [
    transportCheck(init.trustedProxies),
    websocketRequestCheck,
    tokenInUrlCheck,
    credentialsCheck,
    subprotocolCheck,
    originCheck(init.allowedOrigins),
    accessTokenCheck(init.verifyToken, init.gatewayClientId, init.builtInIssuer),
    csrfCheck(init.csrfKey),
    clientIdCheck,
    revocationCheck(init.store, { deviceRegistry: init.builtInIssuer }),
  ];
}

/**
 * Runs the checks in order and returns the first rejection, or undefined when all pass. A check that
 * throws a `PortcullisError`, such as the store's `temporarily_unavailable` while the database cannot
 * be reached, rejects with its code. Other exceptions propagate.
 */
export async function runHandshakeChecks(checks: HandshakeCheck[], state: HandshakeState): Promise<ErrorCode | undefined> {
  for (const check of checks) {
    let rejection: ErrorCode | undefined;
    try {
      rejection = await check.run(state);
    } catch (error) {
      if (!(error instanceof PortcullisError)) {
        throw error;
      }
      rejection = error.code;
    }

    if (rejection) {
      return rejection;
    }
  }
  return undefined;
}
