// Names, sizes and the result row format shared by the harness, the servers and the load process.

/** The four servers that every scenario compares, in the order the report shows them. */
export const systems = ['raw-ws', 'ws+jose', 'socket.io', 'portcullis'] as const;

/** One of {@link systems}. */
export type SystemId = (typeof systems)[number];

/** The seven scenarios, in the order they run. */
export const scenarios = ['handshakes-wss', 'handshakes-plain', 'fanout', 'memory', 'revocation', 'token-endpoint', 'handshakes-dpop'] as const;

/** One of {@link scenarios}. */
export type ScenarioId = (typeof scenarios)[number];

/** One measured figure. `bench/results/<date>.json` is an array of these. */
export interface ResultRow {
  scenario: ScenarioId;
  system: SystemId;
  metric: string;
  value: number;
  unit: string;
}

/**
 * Pairs of scenario and system that are not measured, with the reason the report prints. Every
 * other pair produces rows.
 */
export const notMeasured: ReadonlyArray<{ scenario: ScenarioId; system: SystemId; reason: string }> = [
  ...(['raw-ws', 'ws+jose', 'socket.io'] as const).map((system) => ({
    scenario: 'token-endpoint' as const,
    system,
    reason: 'The peers have no token endpoint.',
  })),
  {
    scenario: 'handshakes-dpop',
    system: 'raw-ws',
    reason: 'raw-ws does not authenticate, so there is no token to bind a proof to.',
  },
  {
    scenario: 'handshakes-dpop',
    system: 'socket.io',
    reason: 'The socket.io peer reads its token from the CONNECT packet after the WebSocket upgrade, and RFC 9449 defines no place for a proof there.',
  },
];

/** Returns the systems that run in `scenario`. */
export function systemsOf(scenario: ScenarioId): SystemId[] {
  return systems.filter((system) => !notMeasured.some((skip) => skip.scenario === scenario && skip.system === system));
}

/** Sizes and time limits of one run. Durations are in milliseconds. */
export interface BenchSizes {
  /** Sizes of the three handshake scenarios: over wss, without TLS, and over wss with DPoP. */
  handshakes: { concurrency: number; warmupMs: number; durationMs: number };
  /**
   * `messages` are published with `window` in flight for the delivery rate, then `latencyMessages`
   * one at a time, `latencyGapMs` apart, for the latency.
   */
  fanout: { subscribers: number; messages: number; window: number; latencyMessages: number; latencyGapMs: number; connectConcurrency: number };
  memory: { connections: number; connectConcurrency: number; settleMs: number };
  revocation: { connections: number; connectConcurrency: number };
  tokenEndpoint: { concurrency: number; warmupMs: number; durationMs: number };
  /** Hard limit for one scenario on one system, server start included. Past it, both processes are killed. */
  jobTimeoutMs: number;
  /**
   * Hard limit for the whole run, per round: a job still running then is stopped, and jobs not
   * started are left out.
   */
  runTimeoutMs: number;
}

/** Full sizes, as the scenarios define them. */
export const fullSizes: BenchSizes = {
  // The warm-up lets each server's JIT compile its handshake path before the measured window.
  handshakes: { concurrency: 50, warmupMs: 5_000, durationMs: 15_000 },
  fanout: { subscribers: 5_000, messages: 300, window: 4, latencyMessages: 100, latencyGapMs: 20, connectConcurrency: 100 },
  memory: { connections: 20_000, connectConcurrency: 100, settleMs: 5_000 },
  revocation: { connections: 1_000, connectConcurrency: 100 },
  tokenEndpoint: { concurrency: 16, warmupMs: 2_000, durationMs: 15_000 },
  jobTimeoutMs: 180_000,
  runTimeoutMs: 25 * 60_000,
};

/** `--quick`: every scenario at small sizes, about three minutes on two cores. */
export const quickSizes: BenchSizes = {
  handshakes: { concurrency: 50, warmupMs: 4_000, durationMs: 2_000 },
  fanout: { subscribers: 1_000, messages: 80, window: 4, latencyMessages: 30, latencyGapMs: 20, connectConcurrency: 100 },
  memory: { connections: 1_500, connectConcurrency: 100, settleMs: 1_000 },
  revocation: { connections: 1_000, connectConcurrency: 100 },
  tokenEndpoint: { concurrency: 16, warmupMs: 1_000, durationMs: 3_000 },
  jobTimeoutMs: 45_000,
  // A round took 143 s on a quiet two-core machine before the DPoP scenario, which adds two jobs of
  // about 10 s each.
  runTimeoutMs: 200_000,
};

/** Tiny sizes for the smoke test: proves that every scenario runs, measures nothing useful. */
export const smokeSizes: BenchSizes = {
  handshakes: { concurrency: 4, warmupMs: 100, durationMs: 400 },
  fanout: { subscribers: 10, messages: 5, window: 2, latencyMessages: 5, latencyGapMs: 5, connectConcurrency: 10 },
  memory: { connections: 20, connectConcurrency: 10, settleMs: 200 },
  revocation: { connections: 10, connectConcurrency: 10 },
  tokenEndpoint: { concurrency: 2, warmupMs: 100, durationMs: 400 },
  jobTimeoutMs: 30_000,
  runTimeoutMs: 170_000,
};

/** Channel that every fan-out subscriber joins. */
export const fanoutChannel = 'bench/fanout';

/** Subject of the connections that the revocation scenario revokes on the peers. */
export const revokedSubject = 'bench-revoked';

/** Issuer and audience of the tokens that the ws+jose and socket.io peers accept. */
export const peerTokenIssuer = 'https://bench.localhost';
export const peerTokenAudience = 'https://bench.localhost/ws';
