import crypto from 'node:crypto';

import type { ErrorCode } from '../../errors.ts';
import type { VerifiedToken } from '../token-verifier.ts';
import { normalizedHtu, ProofError, verifyProof, type ProofProblem } from './proof.ts';
import type { ProofReplayCache } from './replay-cache.ts';

/** Seconds a proof stays acceptable after its `iat`, before the clock leeway. */
export const proofMaxAgeSeconds = 60;

/** Settings of the gateway's DPoP proof verifier. */
export interface DpopVerifierInit {
  /** The `https://` form of the WebSocket URL, which the proof of a handshake or in-band `auth` must name. */
  htu: string;
  algorithms: readonly string[];
  clockLeewaySeconds: number;
  replayCache: ProofReplayCache;
}

/** The outcome of a proof check: nothing when it passes, or the code and the failed part. */
export type ProofRejection = { code: ErrorCode; detail: ProofProblem } | undefined;

/** The HTTP request a proof must be made for. */
export interface ProofTarget {
  htm: string;
  /** The `https://` URL of the request, without query or fragment. */
  htu: string;
}

/** Checks the DPoP proofs that accompany DPoP-bound tokens, at the handshake, in band and at the HTTP API. */
export interface DpopVerifier {
  readonly htu: string;
  /**
   * Checks the values of the request's `DPoP` headers (exactly one is allowed) for `accessToken`.
   * `target` defaults to the WebSocket handshake: `GET` and the `https://` form of the WebSocket URL.
   */
  check(proofs: readonly string[], accessToken: string, jkt: string, target?: ProofTarget): Promise<ProofRejection>;
}

/**
 * Returns the thumbprint of the key a token is bound to (RFC 9449 section 6.1), undefined for a token
 * without `cnf.jkt`, or null for a `cnf.jkt` that is not a string, which no key can satisfy.
 */
export function boundKeyThumbprint(token: VerifiedToken): string | null | undefined {
  const confirmation = token.payload.cnf;
  if (confirmation === null || typeof confirmation !== 'object' || !('jkt' in confirmation)) {
    return undefined;
  }
  const jkt = (confirmation as Record<string, unknown>).jkt;
  return typeof jkt === 'string' && jkt !== '' ? jkt : null;
}

/**
 * Creates the verifier. A proof passes when it verifies (see `verifyProof`), its key is the one the
 * token is bound to, and its `jti` was not used with that key before within the proof's window.
 */
export function createDpopVerifier(init: DpopVerifierInit): DpopVerifier {
  // Normalized once, because every handshake compares against it.
  const handshakeTarget = { htm: 'GET', htu: normalizedHtu(init.htu) ?? init.htu };

  return {
    htu: init.htu,
    async check(proofs, accessToken, jkt, target) {
      if (proofs.length !== 1) {
        return rejection(proofs.length === 0 ? 'missing' : 'repeated');
      }

      const now = Math.floor(Date.now() / 1000);
      const leeway = init.clockLeewaySeconds;
      let proof;
      try {
        proof = await verifyProof(proofs[0], {
          htm: target?.htm ?? handshakeTarget.htm,
          htu: target ? normalizedHtu(target.htu) ?? target.htu : handshakeTarget.htu,
          accessToken,
          algorithms: init.algorithms,
          notBefore: now - proofMaxAgeSeconds - leeway,
          notAfter: now + leeway,
        });
      } catch (error) {
        if (error instanceof ProofError) {
          return rejection(error.problem);
        }
        throw error;
      }

      if (proof.jkt !== jkt) {
        return rejection('key_mismatch');
      }
      // Kept until the proof's own window closes. After that, the `iat` check rejects the proof.
      const expiresAtMs = (proof.iat + proofMaxAgeSeconds + leeway + 1) * 1000;
      const key = `dpop:${jkt}:${crypto.hash('sha256', proof.jti, 'base64url')}`;
      if (!await init.replayCache.firstUse(key, expiresAtMs)) {
        return rejection('replayed');
      }
      return undefined;
    },
  };
}

function rejection(detail: ProofProblem): ProofRejection {
  return { code: 'invalid_dpop_proof', detail };
}
