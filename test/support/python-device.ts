// Runs the device clients of test/e2e/python with Debian's Python, which Portcullis did not write.
import { spawn } from 'node:child_process';
import path from 'node:path';

import { repositoryRoot, type TestServer } from './server.ts';

/** Debian's interpreter, which has python3-websockets and python3-cryptography. */
export const pythonPath = '/usr/bin/python3';

// Default upper bound on one script run. The scripts' own network timeouts are 10 s each.
const defaultKillAfterMs = 60_000;

/** The exit code and output of one script run. */
export interface ScriptRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Extra arguments of a script run, and its upper bound in milliseconds. */
export interface ScriptOptions {
  extraArgs?: string[];
  killAfterMs?: number;
}

/**
 * Runs `test/e2e/python/<script>` against `server` as `device`, with `--port`, `--ca-file` and
 * `--client-id` followed by the extra arguments. The client secret travels in the environment only,
 * and no proxy variable is passed on.
 */
export function runPythonDevice(script: string, server: TestServer, device: { client_id: string; client_secret: string }, options: ScriptOptions = {}): Promise<ScriptRun> {
  const args = [path.join(repositoryRoot, 'test/e2e/python', script), '--port', String(server.port), '--ca-file', path.join(server.dataDir, 'ca.pem'), '--client-id', device.client_id, ...(options.extraArgs ?? [])];
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', PORTCULLIS_CLIENT_SECRET: device.client_secret };

  return new Promise((resolve, reject) => {
    const child = spawn(pythonPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: options.killAfterMs ?? defaultKillAfterMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => { stdout += chunk; });
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
