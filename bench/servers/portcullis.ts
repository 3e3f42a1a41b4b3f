// Starts the real `portcullis start` as a child of this process and stops it when the harness goes
// away. The harness measures the child's pid, which this launcher reports, not its own.
import { spawn } from 'node:child_process';
import path from 'node:path';

import { exitWithHarness, sendToHarness } from '../child.ts';
import { nodeArgsFromEnvironment, repositoryRoot } from '../processes.ts';

/** Settings of the launcher, passed as JSON in its first argument. */
export interface PortcullisSettings {
  port: number;
  /**
   * Port of the plain-HTTP listener, which accepts connections from the load process on 127.0.0.1 as
   * from a TLS-terminating proxy; null for none.
   */
  plainPort: number | null;
  dataDir: string;
  certFile: string;
  keyFile: string;
  /** Further `portcullis start` flags, such as raised limits. */
  extraArgs: string[];
  deadlineMs: number;
}

// BENCH_PORTCULLIS_LOG_LEVEL (for example `info`) shows what the server does during a scenario, at
// the cost of the logging itself in the figures.
const logLevel = process.env.BENCH_PORTCULLIS_LOG_LEVEL || 'warn';
// The server's log lines after start-up go to the harness's standard error. At the default level at
// most this many, so that a flood of identical warnings cannot bury the progress lines.
const maxForwardedLines = logLevel === 'warn' ? 20 : Number.POSITIVE_INFINITY;
// Node flags for the server itself rather than this launcher, such as `--cpu-prof`.
const nodeArgs = nodeArgsFromEnvironment('BENCH_SERVER_NODE_ARGS');

const settings = JSON.parse(process.argv[2] ?? '{}') as PortcullisSettings;

// No NODE_EXTRA_CA_CERTS, which only a server that calls its own listener for browser logins needs,
// and no scenario does. With the CA in its trust store, OpenSSL builds and checks the certificate
// chain on every TLS handshake and sends the CA too, which the peers do not.
function environmentWithoutExtraCa(): NodeJS.ProcessEnv {
  const environment = { ...process.env };
  delete environment.NODE_EXTRA_CA_CERTS;
  return environment;
}

const server = spawn(process.execPath, [
  ...nodeArgs,
  path.join(repositoryRoot, 'bin/portcullis.js'), 'start',
  '--host', '127.0.0.1',
  '--port', String(settings.port),
  '--public-url', `https://localhost:${settings.port}`,
  '--data-dir', settings.dataDir,
  '--tls-cert', settings.certFile,
  '--tls-key', settings.keyFile,
  '--log-level', logLevel,
  ...(settings.plainPort === null ? [] : ['--plain-port', String(settings.plainPort), '--trusted-proxy', '127.0.0.1']),
  ...settings.extraArgs,
], {
  cwd: repositoryRoot,
  env: environmentWithoutExtraCa(),
  stdio: ['ignore', 'pipe', 'pipe'],
});

let started = false;
let forwarded = 0;
let suppressed = 0;

function forward(line: string): void {
  if (!started || line.trim() === '') {
    return;
  }
  if (forwarded >= maxForwardedLines) {
    suppressed += 1;
    return;
  }
  forwarded += 1;
  process.stderr.write(`${line}\n`);
}

let stderrText = '';
server.stderr.on('data', (chunk: Buffer) => {
  const text = chunk.toString('utf8');
  if (!started) {
    stderrText += text;
    // The start command prints this banner on standard error once the listener is up.
    if (stderrText.includes('Portcullis is running')) {
      started = true;
      void sendToHarness({ type: 'ready', port: settings.port, plainPort: settings.plainPort ?? undefined, pid: server.pid! });
    }
    return;
  }
  text.split('\n').forEach(forward);
});
server.stdout.on('data', (chunk: Buffer) => chunk.toString('utf8').split('\n').forEach(forward));

server.once('exit', async (code, signal) => {
  if (!started) {
    await sendToHarness({ type: 'failed', message: `portcullis start exited with code ${code} (signal ${signal}) before it listened: ${stderrText.trim().slice(-2_000)}` });
  }
  if (suppressed > 0) {
    process.stderr.write(`${suppressed} more server log lines were not shown\n`);
  }
  process.exit(0);
});

exitWithHarness(settings.deadlineMs, async () => {
  if (server.exitCode !== null || server.signalCode !== null) {
    return;
  }
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  server.kill('SIGTERM');
  const timer = setTimeout(() => server.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
});
