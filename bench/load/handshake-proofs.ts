// The DPoP proof of every handshake, signed in the load process: its cost counts as load CPU, not as
// server CPU, as a device's would.
import { accessTokenHash, handshakeHtu, importProofSigner, signProof, type ProofSigner } from '../dpop.ts';
import type { LoadJob } from './job.ts';

interface HandshakeProofContext {
  signer: ProofSigner;
  htu: string;
  ath: string;
}

// The key is imported and the token hashed once per job: they do not change between handshakes.
const contexts = new WeakMap<LoadJob, Promise<HandshakeProofContext>>();

function contextOf(job: LoadJob): Promise<HandshakeProofContext> {
  let context = contexts.get(job);
  if (!context) {
    context = importProofSigner(job.dpopKey!).then((signer) => ({ signer, htu: handshakeHtu(job.port), ath: accessTokenHash(job.auth!.token) }));
    contexts.set(job, context);
  }
  return context;
}

/**
 * Signs a new proof for one handshake of `job` (RFC 9449 section 7.1): fresh `jti`, `iat` of now,
 * `htm: GET`, the `https://` form of the WebSocket URL, and `ath` of the job's token.
 */
export async function signHandshakeProof(job: LoadJob): Promise<string> {
  const { signer, htu, ath } = await contextOf(job);
  return signProof(signer, { htm: 'GET', htu, ath });
}

/**
 * Signs `count` handshake proofs one after another and returns the CPU time of this process per
 * proof, in microseconds: the load-side cost that DPoP adds to each handshake.
 */
export async function measureProofSigningCpu(job: LoadJob, count: number): Promise<number> {
  await signHandshakeProof(job);
  const start = process.cpuUsage();
  for (let index = 0; index < count; index += 1) {
    await signHandshakeProof(job);
  }
  const used = process.cpuUsage(start);
  return (used.user + used.system) / count;
}
