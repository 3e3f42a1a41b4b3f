// Turns a run into the markdown report: each target with its ratio and whether Portcullis meets it,
// DPoP handshakes next to bearer handshakes, then the figures of every scenario.
import fs from 'node:fs';
import path from 'node:path';

import { notMeasured, scenarios, systems, type ResultRow, type ScenarioId, type SystemId } from './config.ts';
import type { BenchRun } from './harness.ts';

/** A target of the benchmark: a ratio against a peer in the same run, or an absolute bound. */
export interface Target {
  scenario: ScenarioId;
  metric: string;
  description: string;
  /** Peer to compare with, absent for an absolute bound. */
  peer?: SystemId;
  /** Portcullis / peer must be at least this. */
  minRatio?: number;
  /** Portcullis / peer must be at most this. */
  maxRatio?: number;
  /** Portcullis's value must be below this, in the metric's unit. */
  below?: number;
  /**
   * Server CPU time per operation of the same scenario. On a machine where the load generator
   * saturates first, the throughput ratio hides server cost, but the ratio of this metric does not.
   */
  cpuMetric?: string;
}

/** The targets, as the benchmark's specification states them. */
export const targets: readonly Target[] = [
  { scenario: 'handshakes-wss', metric: 'rate', peer: 'raw-ws', minRatio: 0.95, cpuMetric: 'server_cpu_per_handshake', description: 'Handshakes over wss ≥ 0.95 × raw-ws' },
  { scenario: 'handshakes-wss', metric: 'rate', peer: 'ws+jose', minRatio: 1, cpuMetric: 'server_cpu_per_handshake', description: 'Handshakes over wss ≥ ws+jose' },
  { scenario: 'handshakes-plain', metric: 'rate', peer: 'raw-ws', minRatio: 0.8, cpuMetric: 'server_cpu_per_handshake', description: 'Handshakes without TLS ≥ 0.8 × raw-ws' },
  { scenario: 'handshakes-plain', metric: 'rate', peer: 'socket.io', minRatio: 1.5, cpuMetric: 'server_cpu_per_handshake', description: 'Handshakes without TLS ≥ 1.5 × socket.io' },
  { scenario: 'fanout', metric: 'delivered_rate', peer: 'raw-ws', minRatio: 1, cpuMetric: 'server_cpu_per_delivery', description: 'Fan-out deliveries ≥ raw-ws broadcast' },
  { scenario: 'fanout', metric: 'delivered_rate', peer: 'socket.io', minRatio: 1.5, cpuMetric: 'server_cpu_per_delivery', description: 'Fan-out deliveries ≥ 1.5 × socket.io' },
  { scenario: 'fanout', metric: 'latency_p99', below: 50, description: 'Fan-out p99 latency < 50 ms' },
  { scenario: 'memory', metric: 'rss_per_connection', peer: 'raw-ws', maxRatio: 1.25, description: 'Memory per connection ≤ 1.25 × raw-ws' },
  { scenario: 'revocation', metric: 'latency_p99', below: 50, description: 'Revocation p99 < 50 ms' },
];

/** The outcome of one target in one run. */
export interface TargetResult {
  target: Target;
  portcullis: number | undefined;
  reference: number | undefined;
  ratio: number | undefined;
  /** Peer's server CPU per operation / Portcullis's: above 1 means Portcullis spends less. */
  cpuRatio: number | undefined;
  verdict: 'pass' | 'fail' | 'not measured';
}

function valueOf(rows: readonly ResultRow[], scenario: ScenarioId, system: SystemId, metric: string): number | undefined {
  return rows.find((row) => row.scenario === scenario && row.system === system && row.metric === metric)?.value;
}

function cpuRatioOf(rows: readonly ResultRow[], target: Target): number | undefined {
  if (!target.cpuMetric || !target.peer) {
    return undefined;
  }
  const own = valueOf(rows, target.scenario, 'portcullis', target.cpuMetric);
  const peer = valueOf(rows, target.scenario, target.peer, target.cpuMetric);
  return own === undefined || peer === undefined || own === 0 ? undefined : peer / own;
}

/** Checks every target against the rows of one run. */
export function evaluateTargets(rows: readonly ResultRow[]): TargetResult[] {
  return targets.map((target) => {
    const portcullis = valueOf(rows, target.scenario, 'portcullis', target.metric);
    if (target.below !== undefined) {
      const base = { target, portcullis, reference: target.below, ratio: undefined, cpuRatio: undefined };
      if (portcullis === undefined) {
        return { ...base, verdict: 'not measured' };
      }
      return { ...base, verdict: portcullis < target.below ? 'pass' : 'fail' };
    }

    const reference = valueOf(rows, target.scenario, target.peer!, target.metric);
    if (portcullis === undefined || reference === undefined || reference === 0) {
      return { target, portcullis, reference, ratio: undefined, cpuRatio: undefined, verdict: 'not measured' };
    }
    const ratio = portcullis / reference;
    const meets = (target.minRatio === undefined || ratio >= target.minRatio) && (target.maxRatio === undefined || ratio <= target.maxRatio);
    return { target, portcullis, reference, ratio, cpuRatio: cpuRatioOf(rows, target), verdict: meets ? 'pass' : 'fail' };
  });
}

/** One system's DPoP handshakes (scenario 7) against its bearer handshakes over wss (scenario 1) in the same run. */
export interface DpopComparison {
  system: SystemId;
  bearerRate: number;
  dpopRate: number;
  /** DPoP rate / bearer rate: below 1 means fewer handshakes per second with DPoP. */
  rateRatio: number;
  bearerServerCpu: number;
  dpopServerCpu: number;
  /** DPoP server CPU per handshake / bearer's: above 1 means DPoP costs the server more. */
  serverCpuRatio: number;
  /** CPU time of the load process to sign one proof, in µs. */
  proofSigningCpu: number | undefined;
}

/** Compares scenario 7 with scenario 1 for every system that ran both. */
export function compareDpopWithBearer(rows: readonly ResultRow[]): DpopComparison[] {
  return systems.flatMap((system) => {
    const bearerRate = valueOf(rows, 'handshakes-wss', system, 'rate');
    const dpopRate = valueOf(rows, 'handshakes-dpop', system, 'rate');
    const bearerServerCpu = valueOf(rows, 'handshakes-wss', system, 'server_cpu_per_handshake');
    const dpopServerCpu = valueOf(rows, 'handshakes-dpop', system, 'server_cpu_per_handshake');
    if (!bearerRate || dpopRate === undefined || !bearerServerCpu || dpopServerCpu === undefined) {
      return [];
    }
    return [{
      system,
      bearerRate,
      dpopRate,
      rateRatio: dpopRate / bearerRate,
      bearerServerCpu,
      dpopServerCpu,
      serverCpuRatio: dpopServerCpu / bearerServerCpu,
      proofSigningCpu: valueOf(rows, 'handshakes-dpop', system, 'load_cpu_per_proof'),
    }];
  });
}

/** Formats a figure for the tables: no decimals from 100 up, one from 10, two below. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) {
    return String(value);
  }
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

const scenarioTitles: Record<ScenarioId, string> = {
  'handshakes-wss': '1. Handshakes per second over wss',
  'handshakes-plain': '2. Handshakes per second without TLS',
  fanout: '3. Fan-out to one channel',
  memory: '4. Memory per idle authenticated connection',
  revocation: '5. Revocation latency',
  'token-endpoint': '6. Token endpoint (client credentials)',
  'handshakes-dpop': '7. Handshakes per second over wss with DPoP',
};

function scenarioTable(run: BenchRun, scenario: ScenarioId): string[] {
  const scenarioRows = run.rows.filter((row) => row.scenario === scenario);
  const metrics = [...new Map(scenarioRows.map((row) => [row.metric, row.unit])).entries()];
  const lines = [`### ${scenarioTitles[scenario]}`, ''];

  if (metrics.length > 0) {
    lines.push(`| metric | unit | ${systems.join(' | ')} |`, `|---|---|${systems.map(() => '---:').join('|')}|`);
    for (const [metric, unit] of metrics) {
      const cells = systems.map((system) => {
        const value = valueOf(scenarioRows, scenario, system, metric);
        return value === undefined ? '–' : formatNumber(value);
      });
      lines.push(`| ${metric} | ${unit} | ${cells.join(' | ')} |`);
    }
    lines.push('');
  }

  for (const skip of notMeasured.filter((entry) => entry.scenario === scenario)) {
    lines.push(`- ${skip.system}: not measured. ${skip.reason}`);
  }
  for (const failure of run.failures.filter((entry) => entry.scenario === scenario)) {
    lines.push(`- ${failure.system}: failed: ${failure.message}`);
  }
  if (lines[lines.length - 1] !== '') {
    lines.push('');
  }
  return lines;
}

function targetTable(rows: readonly ResultRow[]): string[] {
  const lines = [
    '## Targets',
    '',
    'The result compares throughput or latency, as the targets are stated. "CPU ratio" is the peer\'s server CPU time per operation divided by Portcullis\'s, for scenarios where the load generator may saturate before the server does: above 1 means Portcullis spends less CPU per operation than the peer.',
    '',
    '| target | Portcullis | reference | ratio | CPU ratio | result |',
    '|---|---:|---:|---:|---:|---|',
  ];
  for (const result of evaluateTargets(rows)) {
    let reference = '–';
    if (result.target.below !== undefined) {
      reference = `< ${result.target.below}`;
    } else if (result.reference !== undefined) {
      reference = `${formatNumber(result.reference)} (${result.target.peer})`;
    }
    const portcullis = result.portcullis === undefined ? '–' : formatNumber(result.portcullis);
    const ratio = result.ratio === undefined ? '–' : `${result.ratio.toFixed(2)}×`;
    const cpuRatio = result.cpuRatio === undefined ? '–' : `${result.cpuRatio.toFixed(2)}×`;
    lines.push(`| ${result.target.description} | ${portcullis} | ${reference} | ${ratio} | ${cpuRatio} | ${result.verdict} |`);
  }
  lines.push('');
  return lines;
}

function dpopTable(rows: readonly ResultRow[]): string[] {
  const comparisons = compareDpopWithBearer(rows);
  if (comparisons.length === 0) {
    return [];
  }
  const lines = [
    '## DPoP next to bearer',
    '',
    'Handshakes over wss with a DPoP-bound token and a new proof per handshake (scenario 7), against the same system with a bearer token (scenario 1) in this run. The load process signs the proofs, so their cost is in `load_cpu`, not in the server\'s CPU per handshake.',
    '',
    '| system | bearer handshakes/s | DPoP handshakes/s | rate ratio | bearer server CPU per handshake (µs) | DPoP server CPU per handshake (µs) | CPU ratio | load CPU per proof (µs) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const comparison of comparisons) {
    const signing = comparison.proofSigningCpu === undefined ? '–' : formatNumber(comparison.proofSigningCpu);
    lines.push(`| ${comparison.system} | ${formatNumber(comparison.bearerRate)} | ${formatNumber(comparison.dpopRate)} | ${comparison.rateRatio.toFixed(2)}× | ` +
      `${formatNumber(comparison.bearerServerCpu)} | ${formatNumber(comparison.dpopServerCpu)} | ${comparison.serverCpuRatio.toFixed(2)}× | ${signing} |`);
  }
  lines.push('');
  return lines;
}

/** Renders the run as markdown: machine, sizes, the targets, DPoP against bearer, then one table per scenario. */
export function renderMarkdown(run: BenchRun): string {
  const { machine, sizes } = run;
  const lines = [
    `# Benchmark results, ${run.startedAt.toISOString().slice(0, 10)} (${run.mode})`,
    '',
    `Machine: ${machine.cpuModel}, ${machine.cpus} CPUs, ${machine.memoryGiB} GiB, ${machine.kernel}, Node.js ${machine.node}. ` +
      `Servers and load generator share the machine. The run took ${Math.round(run.durationMs / 1_000)} s. ` +
      `Other processes kept ${run.backgroundCpus.before.toFixed(2)} CPUs busy in the second before the run and ${run.backgroundCpus.after.toFixed(2)} in the second after it.`,
    '',
    `${run.rounds > 1 ? `Every figure is the median of ${run.rounds} rounds, in which the systems took turns. ` : ''}` +
      `Sizes: ${sizes.handshakes.concurrency} connectors for ${sizes.handshakes.durationMs / 1_000} s after ${sizes.handshakes.warmupMs / 1_000} s of warm-up; ` +
      `fan-out to ${sizes.fanout.subscribers} subscribers, ${sizes.fanout.messages} messages with ${sizes.fanout.window} in flight for the rate and ${sizes.fanout.latencyMessages} one at a time for the latency; ` +
      `${sizes.memory.connections} idle connections; ${sizes.revocation.connections} connections revoked at once; ` +
      `${sizes.tokenEndpoint.concurrency} token requests in flight for ${sizes.tokenEndpoint.durationMs / 1_000} s.`,
    '',
    ...targetTable(run.rows),
    ...dpopTable(run.rows),
    '## Figures',
    '',
    ...scenarios.flatMap((scenario) => scenarioTable(run, scenario)),
  ];
  return `${lines.join('\n').trimEnd()}\n`;
}

/** Writes `<date>-<mode>.json` (the rows) and `.md` (the report) into `directory`. Full runs get no mode suffix. */
export function writeResults(run: BenchRun, directory: string): { jsonFile: string; markdownFile: string } {
  fs.mkdirSync(directory, { recursive: true });
  const date = run.startedAt.toISOString().slice(0, 10);
  const base = path.join(directory, run.mode === 'full' ? date : `${date}-${run.mode}`);
  const jsonFile = `${base}.json`;
  const markdownFile = `${base}.md`;
  fs.writeFileSync(jsonFile, `${JSON.stringify(run.rows, null, 2)}\n`);
  fs.writeFileSync(markdownFile, renderMarkdown(run));
  return { jsonFile, markdownFile };
}
