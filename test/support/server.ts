import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

import { Agent, fetch as undiciFetch } from 'undici';

import { validateOptions, type Options } from '../../src/config/options.ts';
import { createLogger } from '../../src/log/logger.ts';
import { startServer, type RunningServer } from '../../src/server.ts';

import { captureLogLines, rememberSecret, rememberServerSecrets, secretRecordingFetch } from './capture.ts';

/** Repository root, for spawning the real CLI. */
export const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cliPath = path.join(repositoryRoot, 'bin/portcullis.js');

/** A Portcullis server started in this process on a free loopback port, with captured logs. */
export interface TestServer {
  /** Public origin, `https://localhost:<port>`. */
  url: string;
  port: number;
  dataDir: string;
  /** PEM of the development CA that signed the server certificate. */
  caPem: string;
  /** Every JSON log line written so far. */
  logs: string[];
  running: RunningServer;
  options: Readonly<Options>;
  /** `fetch` that trusts the development CA and does not follow redirects unless told. */
  fetch: typeof fetch;
  close(): Promise<void>;
}

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Creates an empty temporary data directory. */
export function temporaryDataDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-test-'));
}

/**
 * Starts a server on `https://localhost:<free port>` with a fresh data directory unless one is
 * given. Options not listed keep their defaults.
 */
export async function startTestServer(overrides: Partial<Options> & { logs?: string[] } = {}): Promise<TestServer> {
  const { logs = [], ...optionOverrides } = overrides;
  const port = optionOverrides.port ?? await freePort();
  const options = validateOptions({
    host: '127.0.0.1',
    port,
    publicUrl: `https://localhost:${port}`,
    dataDir: temporaryDataDir(),
    logLevel: 'debug',
    // Suites open hundreds of connections from 127.0.0.1 under one client id, so these limits are
    // generous. Limit tests set their own values.
    handshakesPerIpPerMinute: 100_000,
    handshakesPerClientPerMinute: 100_000,
    maxConnectionsPerClient: 10_000,
    maxConnectionsPerUser: 10_000,
    // SDK clients of a stopped server wait their reconnect hint, drawn from this window, so restart
    // tests stay short. Tests of the shutdown itself set their own.
    drainWindowMs: 200,
    ...optionOverrides,
  });

  const sink = new Writable({
    write(chunk, _encoding, callback) {
      const lines = chunk.toString('utf8').split('\n').filter(Boolean);
      logs.push(...lines);
      captureLogLines(`in-process ${port}`, lines);
      callback();
    },
  });
  const running = await startServer(options, createLogger(options.logLevel, sink));
  const caPem = fs.readFileSync(path.join(options.dataDir, 'ca.pem'), 'utf8');
  await rememberServerSecrets(running.store, options.dataDir);
  const dispatcher = new Agent({ connect: { ca: caPem } });

  return {
    url: options.publicUrl,
    port,
    dataDir: options.dataDir,
    caPem,
    logs,
    running,
    options,
    fetch: secretRecordingFetch(((input: any, init?: any) => undiciFetch(input, { redirect: 'manual', ...init, dispatcher })) as unknown as typeof fetch),
    close: () => running.close(),
  };
}

/** Output of one CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `portcullis` CLI with `--data-dir`, optionally writing `input` to its standard input. */
export function runCli(dataDir: string, args: string[], input?: string): Promise<CliResult> {
  return spawnCli([...args, '--data-dir', dataDir], null, input);
}

/**
 * Runs the real CLI with a test server's data directory and database, as an operator would on that
 * node. The database URL goes through `PORTCULLIS_DATABASE_URL`, where a password belongs.
 */
export function runServerCli(server: TestServer, args: string[], input?: string): Promise<CliResult> {
  return spawnCli([...args, '--data-dir', server.dataDir], server.options.databaseUrl, input);
}

function spawnCli(args: string[], databaseUrl: string | null, input?: string): Promise<CliResult> {
  // Set or removed explicitly, so that a URL in the developer's environment cannot redirect the CLI.
  const env = { ...process.env };
  delete env.PORTCULLIS_DATABASE_URL;
  if (databaseUrl !== null) {
    env.PORTCULLIS_DATABASE_URL = databaseUrl;
  }

  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => { stdout += chunk; });
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    child.once('error', reject);
    child.once('close', (code) => {
      // Standard output carries what the operator asked for, such as a new client secret; `start`
      // writes its log there instead.
      const logged = args[0] === 'start' ? `${stdout}\n${stderr}` : stderr;
      captureLogLines(`cli ${args[0] ?? ''}`, logged.split('\n').filter(Boolean));
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(input ?? '');
  });
}

/** Registers a device with a client secret through the CLI and returns its credentials; `extraArgs` such as `['--owner', 'alice']`. */
export async function addDevice(server: TestServer, clientId: string, extraArgs: string[] = []): Promise<{ client_id: string; client_secret: string }> {
  const result = await runServerCli(server, ['devices', 'add', clientId, ...extraArgs]);
  if (result.code !== 0) {
    throw new Error(`devices add failed: ${result.stderr}`);
  }
  const credentials = JSON.parse(result.stdout) as { client_id: string; client_secret: string };
  rememberSecret(credentials.client_secret);
  return credentials;
}

/** Adds a user through the CLI with the password on standard input. */
export async function addUser(server: TestServer, username: string, password: string): Promise<void> {
  rememberSecret(password);
  const result = await runServerCli(server, ['users', 'add', username, '--password-stdin'], `${password}\n`);
  if (result.code !== 0) {
    throw new Error(`users add failed: ${result.stderr}`);
  }
}

/** Gets a client-credentials access token for a device over HTTPS with `client_secret_basic`; `scope` narrows it. */
export async function deviceToken(server: TestServer, device: { client_id: string; client_secret: string }, scope?: string): Promise<string> {
  const response = await server.fetch(`${server.url}/oauth/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(device.client_id)}:${encodeURIComponent(device.client_secret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams(scope === undefined ? { grant_type: 'client_credentials' } : { grant_type: 'client_credentials', scope }).toString(),
  });
  const body = await response.json() as { access_token?: string };
  if (!body.access_token) {
    throw new Error(`token request failed with status ${response.status}`);
  }
  return body.access_token;
}
