// Runs `portcullis start` as a separate process, as an operator would, and reads its JSON log lines.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

import { Agent, fetch as undiciFetch } from 'undici';

import type { Options } from '../../src/config/options.ts';
import { captureLogLines, secretRecordingFetch } from './capture.ts';
import { repositoryRoot, temporaryDataDir, type TestServer } from './server.ts';

const startWaitMs = 60_000;

/** A server process; it fits where tests take a `TestServer`, except `running`, which it lacks. */
export interface NodeProcess extends Omit<TestServer, 'running'> {
  child: ChildProcess;
}

/** What a node process is started with. */
export interface NodeProcessOptions {
  port: number;
  publicUrl: string;
  databaseUrl: string;
  caFile: string;
  /** Further `portcullis start` flags, such as `['--role', 'gateway']`. */
  args: string[];
}

/**
 * Starts `portcullis start` with a fresh data directory and waits for its `server.started` log line.
 * The database URL goes through the environment, and the CA through `NODE_EXTRA_CA_CERTS`, so the
 * node trusts certificates from the test CA when it calls itself or another node.
 */
export async function startNodeProcess(options: NodeProcessOptions): Promise<NodeProcess> {
  const dataDir = temporaryDataDir();
  const logs: string[] = [];
  const child = spawn(process.execPath, [
    `${repositoryRoot}/bin/portcullis.js`, 'start',
    '--host', '127.0.0.1', '--port', String(options.port), '--public-url', options.publicUrl,
    '--data-dir', dataDir, '--log-level', 'debug', ...options.args,
  ], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PORTCULLIS_DATABASE_URL: options.databaseUrl, NODE_EXTRA_CA_CERTS: options.caFile },
  });

  let pending = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString('utf8')).split('\n');
    pending = lines.pop() ?? '';
    const complete = lines.filter(Boolean);
    logs.push(...complete);
    captureLogLines(`node ${options.port}`, complete);
  });
  let pendingStderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
    const lines = (pendingStderr + chunk.toString('utf8')).split('\n');
    pendingStderr = lines.pop() ?? '';
    captureLogLines(`node ${options.port} stderr`, lines.filter(Boolean));
  });
  child.once('close', () => captureLogLines(`node ${options.port}`, [pending, pendingStderr].filter(Boolean)));

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the node did not start within ${startWaitMs} ms: ${stderr}`)), startWaitMs);
    const poll = setInterval(() => {
      if (logs.some((line) => line.includes('"event":"server.started"'))) {
        clearInterval(poll);
        clearTimeout(timer);
        resolve();
      }
    }, 50);
    child.once('exit', (code) => {
      clearInterval(poll);
      clearTimeout(timer);
      reject(new Error(`the node exited with code ${code} before it started: ${stderr}`));
    });
  });

  const caPem = fs.readFileSync(options.caFile, 'utf8');
  const dispatcher = new Agent({ connect: { ca: caPem } });
  return {
    child,
    url: options.publicUrl,
    port: options.port,
    dataDir,
    caPem,
    logs,
    options: { databaseUrl: options.databaseUrl } as Readonly<Options>,
    fetch: secretRecordingFetch(((input: any, init?: any) => undiciFetch(input, { redirect: 'manual', ...init, dispatcher })) as unknown as typeof fetch),
    async close() {
      if (child.exitCode !== null) {
        return;
      }
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
