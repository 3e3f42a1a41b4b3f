import type { Store } from '../../store/database.ts';
import type { CheckResult, HandshakeCheck, HandshakeState } from '../handshake.ts';
import { PortcullisError, type ErrorCode } from '../../errors.ts';
import type { DpopVerifier } from '../dpop/verifier.ts';
import type { RevocationVerdicts } from '../revocation-verdicts.ts';
import type { VerifiedToken } from '../token-verifier.ts';
import { accessTokenCheck } from './access-token.ts';
import { certificateBindingCheck } from './certificate-binding.ts';
import { clientIdCheck } from './client-id.ts';
import { credentialsCheck } from './credentials.ts';
import { csrfCheck } from './csrf.ts';
import { dpopProofCheck } from './dpop-proof.ts';
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
  /** Header in which a trusted proxy forwards the client certificate (`--tls-client-cert-header`); null or absent for none. */
  clientCertificateHeader?: string | null;
  /** Verifies the proofs of DPoP-bound tokens. */
  dpop: DpopVerifier;
  /** Cache of tokens found not revoked. Without it, every handshake reads the database. */
  verdicts?: RevocationVerdicts;
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
    dpopProofCheck(init.dpop),
    certificateBindingCheck({ trustedProxies: init.trustedProxies, header: init.clientCertificateHeader ?? null }),
    csrfCheck(init.csrfKey),
    clientIdCheck,
    revocationCheck(init.store, { deviceRegistry: init.builtInIssuer }, init.verdicts),
  ];
}

/**
 * Runs the checks in order and returns the first rejection, or undefined when all pass. A check that
 * throws a `PortcullisError`, such as the store's `temporarily_unavailable` while the database cannot
 * be reached, rejects with its code. Other exceptions propagate.
 */
export async function runHandshakeChecks(checks: HandshakeCheck[], state: HandshakeState): Promise<ErrorCode | undefined> {
  for (const check of checks) {
    let rejection: CheckResult;
    try {
      const result = check.run(state);
      // Most checks are synchronous. Awaiting only real promises spares each of them a trip through
      // the microtask queue on every handshake.
      rejection = result instanceof Promise ? await result : result;
    } catch (error) {
      rejection = rejectionOf(error);
    }

    if (rejection) {
      return rejection;
    }
  }
  return undefined;
}

/**
 * Runs the `confirm` step of the checks that have one and returns the first rejection. The result
 * is a promise only when some step had to wait. A caller that must act in the same turn of the
 * event loop as the confirmation calls again until the result is not a promise.
 */
export function confirmHandshakeChecks(checks: HandshakeCheck[], state: HandshakeState): CheckResult | Promise<CheckResult> {
  for (let index = 0; index < checks.length; index += 1) {
    let result: CheckResult | Promise<CheckResult>;
    try {
      result = checks[index].confirm?.(state);
    } catch (error) {
      return rejectionOf(error);
    }

    if (result instanceof Promise) {
      const rest = checks.slice(index + 1);
      return result.then((rejection) => rejection ?? confirmHandshakeChecks(rest, state), rejectionOf);
    }
    if (result) {
      return result;
    }
  }
  return undefined;
}

// A `PortcullisError`, such as the store's `temporarily_unavailable`, rejects with its code. Any
// other exception is a bug and propagates.
function rejectionOf(error: unknown): ErrorCode {
  if (!(error instanceof PortcullisError)) {
    throw error;
  }
  return error.code;
}
