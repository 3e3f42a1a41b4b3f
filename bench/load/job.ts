// The job description that the harness hands the load process: one scenario on one system.
import type { BenchSizes, ResultRow, ScenarioId, SystemId } from '../config.ts';
import type { ProofKeyPair } from '../dpop.ts';

/** One scenario run against one server. */
export interface LoadJob {
  scenario: ScenarioId;
  system: SystemId;
  sizes: BenchSizes;
  port: number;
  /** Connect with ws:// and http:// instead of wss:// and https://. */
  plain: boolean;
  caPem: string;
  /** Process whose CPU time and memory are measured: the server itself, not a launcher. */
  serverPid: number;
  /** Access token and client id that every connection presents, or null for raw-ws. */
  auth: { token: string; clientId: string } | null;
  /**
   * Key that `auth.token` is DPoP-bound to. With it, every connection sends the token as
   * `Authorization: DPoP` with a proof signed for that handshake.
   */
  dpopKey?: ProofKeyPair;
  /** Portcullis revocation: the grant of `auth.token` and the server's data directory. */
  grantRevocation?: { dataDir: string; grantId: string };
  /** Token endpoint: the client that requests tokens. */
  tokenClient?: { clientId: string; clientSecret: string };
}

/** A row without the scenario and system, which the job already names. */
export type Measurement = Omit<ResultRow, 'scenario' | 'system'>;
