// Runs every scenario against every system: one server process and one load process at a time,
// each bounded in time, all of them stopped at the end even when a job fails.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { scenarios as allScenarios, systems as allSystems, revokedSubject, systemsOf, type BenchSizes, type ResultRow, type ScenarioId, type SystemId } from './config.ts';
import { createBenchTls, createPeerTokenKeys, signPeerToken, type BenchTls, type PeerTokenKeys } from './credentials.ts';
import { generateProofKeyPair } from './dpop.ts';
import type { LoadJob } from './load/job.ts';
import { describeMachine, type MachineInfo } from './machine.ts';
import { median } from './load/stats.ts';
import { sampleBusyCpus } from './proc.ts';
import { clientCredentialsToken, deviceFlowToken, dpopClientCredentialsToken, registerBenchClients, type BenchClients } from './portcullis-setup.ts';
import { formatNumber } from './report.ts';
import { nodeArgsFromEnvironment, startChild, stopAllChildren, stopChild, trackServerPid, untrackServerPid, waitForMessage } from './processes.ts';
import type { ChildProcess } from 'node:child_process';

/** Selection, sizes and rounds of one {@link runBench} call. */
export interface BenchOptions {
  /** Name of the sizes, printed in the report: `full`, `quick` or `smoke`. */
  mode: string;
  sizes: BenchSizes;
  /** Scenarios to run, all by default. */
  scenarios?: readonly ScenarioId[];
  /** Systems to run, all by default. */
  systems?: readonly SystemId[];
  /**
   * How often each scenario runs on each system. Every row is the median over the rounds. The
   * systems take turns within a round, so that a noisy minute on a shared machine hits all of them.
   */
  rounds?: number;
  /** Receives progress lines, which go to standard error by default. */
  log?: (line: string) => void;
}

/** A job that produced no rows, and why. */
export interface JobFailure {
  scenario: ScenarioId;
  system: SystemId;
  message: string;
}

/** Everything one run measured. */
export interface BenchRun {
  mode: string;
  sizes: BenchSizes;
  rounds: number;
  startedAt: Date;
  durationMs: number;
  machine: MachineInfo;
  /**
   * CPUs kept busy by other processes in the second before the run and the second after it. The
   * servers and the load generator share the machine with them, so a high value means noisy figures.
   */
  backgroundCpus: { before: number; after: number };
  rows: ResultRow[];
  failures: JobFailure[];
}

/** A server process that is ready, and the pid to measure. */
interface RunningServer {
  child: ChildProcess;
  port: number;
  /** Port of Portcullis's plain-HTTP listener, in the scenario without TLS. */
  plainPort?: number;
  pid: number;
}

interface RunContext {
  sizes: BenchSizes;
  workDir: string;
  tls: BenchTls;
  peerKeys: PeerTokenKeys;
  log: (line: string) => void;
  rounds: number;
  /** Time (epoch milliseconds) after which no job starts and running jobs are stopped. */
  runEndsAt: number;
  portcullis?: { dataDir: string; clients: BenchClients };
}

const serverStartTimeoutMs = 60_000;

// Node flags for the load processes and the peer servers, such as `--cpu-prof --cpu-prof-dir=DIR`.
// The Portcullis launcher reads BENCH_SERVER_NODE_ARGS itself and passes it to the real server.
const loadNodeArgs = nodeArgsFromEnvironment('BENCH_LOAD_NODE_ARGS');
const peerNodeArgs = nodeArgsFromEnvironment('BENCH_SERVER_NODE_ARGS');

// Limits that a benchmark from one address and one client id would otherwise hit within seconds.
// Every check still runs, only the thresholds are higher.
const portcullisRaisedLimits = [
  '--handshake-rate-ip', '1000000',
  '--handshake-rate-client', '1000000',
  '--max-connections-per-client', '100000',
  '--message-rate', '100000',
];

/** Runs the selected scenarios on the selected systems and returns their rows and failures. */
export async function runBench(options: BenchOptions): Promise<BenchRun> {
  const backgroundBefore = await sampleBusyCpus(1_000, os.availableParallelism());
  const startedAt = new Date();
  const rounds = Math.max(1, options.rounds ?? 1);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-bench-'));
  const rows: ResultRow[] = [];
  const failures: JobFailure[] = [];

  try {
    const context: RunContext = {
      sizes: options.sizes,
      workDir,
      tls: await createBenchTls(path.join(workDir, 'tls')),
      peerKeys: await createPeerTokenKeys(),
      log: options.log ?? ((line: string) => process.stderr.write(`[bench] ${line}\n`)),
      rounds,
      runEndsAt: startedAt.getTime() + options.sizes.runTimeoutMs * rounds,
    };
    for (const scenario of options.scenarios ?? allScenarios) {
      const selected = systemsOf(scenario).filter((candidate) => (options.systems ?? allSystems).includes(candidate));
      const result = await runScenario(context, scenario, selected);
      rows.push(...result.rows);
      failures.push(...result.failures);
    }
  } finally {
    await stopAllChildren();
    fs.rmSync(workDir, { recursive: true, force: true });
  }

  const durationMs = Date.now() - startedAt.getTime();
  const backgroundCpus = { before: backgroundBefore, after: await sampleBusyCpus(1_000, os.availableParallelism()) };
  return { mode: options.mode, sizes: options.sizes, rounds, startedAt, durationMs, machine: describeMachine(), backgroundCpus, rows, failures };
}

/** Runs one scenario for every round, the systems taking turns, and returns the medians. */
async function runScenario(context: RunContext, scenario: ScenarioId, selected: SystemId[]): Promise<{ rows: ResultRow[]; failures: JobFailure[] }> {
  const { rounds } = context;
  const roundsBySystem = new Map<SystemId, ResultRow[][]>(selected.map((system) => [system, []]));
  const failures: JobFailure[] = [];

  for (let round = 1; round <= rounds; round += 1) {
    for (const system of selected) {
      const name = rounds > 1 ? `${scenario} · ${system} (round ${round} of ${rounds})` : `${scenario} · ${system}`;
      if (Date.now() >= context.runEndsAt) {
        failures.push({ scenario, system, message: `${name} not run: the run's time limit was reached` });
        continue;
      }

      try {
        const deadline = Math.min(Date.now() + context.sizes.jobTimeoutMs, context.runEndsAt);
        roundsBySystem.get(system)!.push(await runJob(context, { scenario, system, name, deadline }));
      } catch (error) {
        const message = (error as Error).message;
        context.log(`${name}: FAILED: ${message}`);
        failures.push({ scenario, system, message: rounds > 1 ? `round ${round}: ${message}` : message });
      }
    }
  }

  return { rows: [...roundsBySystem.values()].flatMap(medianOfRounds), failures };
}

/** Returns one row per metric with the median value over the rounds, or the rows of the only round. */
function medianOfRounds(rounds: ResultRow[][]): ResultRow[] {
  const first = rounds[0] ?? [];
  return first.map((row) => {
    const values = rounds.flatMap((roundRows) => roundRows.filter((candidate) => candidate.metric === row.metric).map((candidate) => candidate.value));
    return { ...row, value: median(values) };
  });
}

async function runJob(context: RunContext, job: { scenario: ScenarioId; system: SystemId; name: string; deadline: number }): Promise<ResultRow[]> {
  const { scenario, system, name: label, deadline } = job;
  const jobStartedAt = Date.now();
  context.log(`${label}: starting the server`);
  const server = await startServer(context, scenario, system);

  try {
    const loadJob = await prepareJob(context, scenario, system, server);
    const load = startChild({ script: 'bench/load/main.ts', label: `${label} load`, nodeArgs: loadNodeArgs });
    try {
      await waitForMessage(load, 'ready', Math.max(1, deadline - Date.now()));
      load.send(loadJob);
      const result = await waitForMessage(load, 'result', Math.max(1, deadline - Date.now()), (text) => context.log(`${label}: ${text}`));
      const rows = result.rows as ResultRow[];
      context.log(`${label}: ${summarize(rows)} (${Math.round((Date.now() - jobStartedAt) / 1_000)} s)`);
      return rows;
    } finally {
      await stopChild(load);
    }
  } finally {
    await stopChild(server.child);
    untrackServerPid(server.pid);
  }
}

function summarize(rows: ResultRow[]): string {
  return rows.slice(0, 3).map((row) => `${row.metric} ${formatNumber(row.value)} ${row.unit}`).join(', ');
}

async function startServer(context: RunContext, scenario: ScenarioId, system: SystemId): Promise<RunningServer> {
  const plain = scenario === 'handshakes-plain';
  const deadlineMs = context.sizes.jobTimeoutMs + 30_000;
  const label = `${system} server`;
  let child: ChildProcess;

  if (system === 'portcullis') {
    const { dataDir } = await portcullisSetup(context);
    const [port, plainPort] = await freePorts(2);
    const settings = {
      port,
      plainPort: plain ? plainPort : null,
      dataDir,
      certFile: context.tls.certFile,
      keyFile: context.tls.keyFile,
      extraArgs: portcullisRaisedLimits,
      deadlineMs,
    };
    child = startChild({ script: 'bench/servers/portcullis.ts', args: [JSON.stringify(settings)], label });
  } else {
    const settings = {
      plain,
      certFile: context.tls.certFile,
      keyFile: context.tls.keyFile,
      publicJwk: system === 'raw-ws' ? null : context.peerKeys.publicJwk,
      deadlineMs,
    };
    const script = system === 'socket.io' ? 'bench/servers/socket-io-peer.ts' : 'bench/servers/ws-peer.ts';
    child = startChild({ script, args: [JSON.stringify(settings)], label, nodeArgs: peerNodeArgs });
  }

  try {
    const ready = await waitForMessage(child, 'ready', serverStartTimeoutMs);
    if (system === 'portcullis') {
      trackServerPid(ready.pid);
    }
    return { child, port: ready.port, plainPort: ready.plainPort, pid: ready.pid };
  } catch (error) {
    await stopChild(child);
    throw error;
  }
}

/** Registers Portcullis's clients once per run, in a data directory that every Portcullis server of the run shares. */
async function portcullisSetup(context: RunContext): Promise<{ dataDir: string; clients: BenchClients }> {
  if (!context.portcullis) {
    const dataDir = path.join(context.workDir, 'portcullis');
    context.log('portcullis: registering the benchmark devices with the CLI');
    context.portcullis = { dataDir, clients: await registerBenchClients(dataDir) };
  }
  return context.portcullis;
}

async function prepareJob(context: RunContext, scenario: ScenarioId, system: SystemId, server: RunningServer): Promise<LoadJob> {
  const job: LoadJob = {
    scenario,
    system,
    sizes: context.sizes,
    // Portcullis keeps its HTTPS port for the token requests below and takes the handshakes on its plain listener.
    port: server.plainPort ?? server.port,
    plain: scenario === 'handshakes-plain',
    caPem: context.tls.caPem,
    serverPid: server.pid,
    auth: null,
  };
  if (system === 'raw-ws') {
    return job;
  }

  if (system !== 'portcullis') {
    const subject = scenario === 'revocation' ? revokedSubject : 'bench-device';
    const dpopKey = scenario === 'handshakes-dpop' ? await generateProofKeyPair() : undefined;
    const token = await signPeerToken(context.peerKeys, subject, 'bench-device', { jkt: dpopKey?.jkt });
    return { ...job, auth: { token, clientId: 'bench-device' }, dpopKey };
  }

  const { dataDir, clients } = await portcullisSetup(context);
  const target = { port: server.port, caPem: context.tls.caPem };
  switch (scenario) {
    case 'fanout':
      return { ...job, auth: { token: await clientCredentialsToken(target, clients.fanout), clientId: clients.fanout.client_id } };
    case 'revocation': {
      const { token, grantId } = await deviceFlowToken(target, dataDir, clients);
      return { ...job, auth: { token, clientId: clients.flow.client_id }, grantRevocation: { dataDir, grantId } };
    }
    case 'token-endpoint':
      return { ...job, tokenClient: { clientId: clients.device.client_id, clientSecret: clients.device.client_secret } };
    case 'handshakes-dpop': {
      // One key for every connector, as one device that opens many connections.
      const dpopKey = await generateProofKeyPair();
      return { ...job, auth: { token: await dpopClientCredentialsToken(target, clients.device, dpopKey), clientId: clients.device.client_id }, dpopKey };
    }
    default:
      return { ...job, auth: { token: await clientCredentialsToken(target, clients.device), clientId: clients.device.client_id } };
  }
}

/** Returns `count` distinct TCP ports that were free on 127.0.0.1 a moment ago. */
async function freePorts(count: number): Promise<number[]> {
  // The probes listen at the same time, so that the system cannot hand out one port twice.
  const probes = await Promise.all(Array.from({ length: count }, () => new Promise<net.Server>((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => resolve(probe));
  })));
  const ports = probes.map((probe) => (probe.address() as net.AddressInfo).port);
  await Promise.all(probes.map((probe) => new Promise((resolve) => probe.close(resolve))));
  return ports;
}
