// Starts the benchmark's child processes (servers and load) and makes sure none outlives the run.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root: children run with it as working directory, where `tsx` resolves. */
export const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Open-file limit asked for every child, because 20,000 sockets plus the files Node itself opens do
 * not fit in a limit of 20,000. Raising a limit past the hard limit needs CAP_SYS_RESOURCE. Without
 * it, the shell raises the soft limit to the hard limit instead.
 */
export const requestedOpenFiles = 65_536;

/** A message a child sends to the harness over IPC. */
export type ChildMessage =
  // `plainPort` is set by a Portcullis launcher that opened the plain-HTTP listener.
  | { type: 'ready'; port: number; plainPort?: number; pid: number }
  | { type: 'progress'; text: string }
  | { type: 'result'; rows: unknown[] }
  | { type: 'revoked'; exitCode: number }
  | { type: 'failed'; message: string };

const running = new Set<ChildProcess>();
// Servers that a launcher started as its own child. The exit hook below kills them by pid.
const serverPids = new Set<number>();

/** Remembers the pid of a server that a launcher process started, so that it is killed even if its launcher is not. */
export function trackServerPid(pid: number): void {
  serverPids.add(pid);
}

/** Forgets a pid passed to {@link trackServerPid} once that server has stopped. */
export function untrackServerPid(pid: number): void {
  serverPids.delete(pid);
}

/** Splits the Node flags in an environment variable, such as `BENCH_LOAD_NODE_ARGS`, at spaces. */
export function nodeArgsFromEnvironment(name: string): string[] {
  return (process.env[name] ?? '').split(' ').filter(Boolean);
}

/** Settings of a child process started by {@link startChild}. */
export interface ChildOptions {
  /** TypeScript file relative to the repository root, run through tsx. */
  script: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Node flags placed before the script, such as `--cpu-prof`. */
  nodeArgs?: string[];
  /** Prefix of the child's standard error lines on the harness's standard error. */
  label: string;
  /** Called for every line the child writes to standard error. By default the line is printed with the label. */
  onStderrLine?: (line: string) => void;
}

/** Starts a TypeScript file in a new Node process with an IPC channel and a raised open-file limit. */
export function startChild(options: ChildOptions): ChildProcess {
  const raiseLimit = `ulimit -n ${requestedOpenFiles} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"`;
  const child = spawn('/bin/sh', ['-c', raiseLimit, process.execPath, ...(options.nodeArgs ?? []), '--import', 'tsx', options.script, ...(options.args ?? [])], {
    cwd: repositoryRoot,
    env: options.env ?? process.env,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));

  const printLine = options.onStderrLine ?? ((line: string) => process.stderr.write(`  [${options.label}] ${line}\n`));
  let pending = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString('utf8')).split('\n');
    pending = lines.pop() ?? '';
    lines.filter((line) => line.trim() !== '').forEach(printLine);
  });
  return child;
}

/**
 * Resolves with the first IPC message of `type` from `child`. Rejects when the child reports
 * `failed`, exits first, or `timeoutMs` passes.
 */
export function waitForMessage<T extends ChildMessage['type']>(
  child: ChildProcess,
  type: T,
  timeoutMs: number,
  onProgress?: (text: string) => void,
): Promise<Extract<ChildMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`no "${type}" message within ${timeoutMs} ms`)), timeoutMs);

    function onMessage(message: ChildMessage): void {
      if (message.type === 'progress') {
        onProgress?.(message.text);
        return;
      }
      if (message.type === 'failed') {
        finish(new Error(message.message));
        return;
      }
      if (message.type === type) {
        finish(null, message as Extract<ChildMessage, { type: T }>);
      }
    }
    function onExit(code: number | null, signal: string | null): void {
      finish(new Error(`the process exited (code ${code}, signal ${signal}) before its "${type}" message`));
    }
    function finish(error: Error | null, message?: Extract<ChildMessage, { type: T }>): void {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error) {
        reject(error);
        return;
      }
      resolve(message!);
    }

    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Stops `child` with SIGTERM and, if it has not exited within `graceMs`, with SIGKILL. */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }

  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Stops every child still running, in parallel. */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...running].map((child) => stopChild(child)));
}

// A harness that exits without its normal cleanup (an exception, Ctrl-C) still leaves no child behind.
// Children also exit on their own when the IPC channel closes, which covers a harness killed with SIGKILL.
process.once('exit', () => {
  for (const child of running) {
    child.kill('SIGKILL');
  }
  for (const pid of serverPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // It has exited already.
    }
  }
});
