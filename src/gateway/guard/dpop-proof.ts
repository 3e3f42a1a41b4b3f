import type { HandshakeCheck } from '../handshake.ts';

/** Verifies the DPoP proof of a DPoP-bound token (RFC 9449). TODO: in progress. */
export function dpopProofCheck(): HandshakeCheck {
  return {
    name: 'dpop_proof',
    run() {
      return undefined;
    },
  };
}
