// Scenario 5: revoke the one authorization behind many live connections and time how long each
// socket takes to see its close, from a timestamp taken right before the trigger.
import https from 'node:https';

import { reportProgress } from '../child.ts';
import { revokedSubject } from '../config.ts';
import { httpsRequest } from '../https-client.ts';
import { CpuWindow, cpuRows } from '../proc.ts';
import { startChild, stopChild, waitForMessage } from '../processes.ts';
import { connect, type BenchConnection } from './clients.ts';
import type { LoadJob, Measurement } from './job.ts';
import { percentile, runPool, sleep } from './stats.ts';

const closeWaitMs = 10_000;

/** Something that starts a revocation and resolves when the command or request has returned. */
type Trigger = () => Promise<void>;

/**
 * Prepares `portcullis sessions revoke <grant-id>` in a process that has already loaded the CLI,
 * so that the measurement covers the command's work and not Node's start-up and TypeScript loading.
 */
async function prepareCliTrigger(job: LoadJob): Promise<{ trigger: Trigger; stop: () => Promise<void> }> {
  const { dataDir, grantId } = job.grantRevocation!;
  const revoker = startChild({ script: 'bench/load/revoker.ts', args: [dataDir, grantId], label: 'revoker' });
  await waitForMessage(revoker, 'ready', 60_000);

  const trigger = async () => {
    const done = waitForMessage(revoker, 'revoked', closeWaitMs);
    revoker.send({ type: 'revoke' });
    const { exitCode } = await done;
    if (exitCode !== 0) {
      throw new Error(`portcullis sessions revoke exited with code ${exitCode}`);
    }
  };
  return { trigger, stop: () => stopChild(revoker) };
}

/** Prepares the peer's control request over a connection opened beforehand, as an admin API would be called. */
async function preparePeerTrigger(job: LoadJob): Promise<{ trigger: Trigger; stop: () => Promise<void> }> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const target = { port: job.port, caPem: job.caPem, agent };
  await httpsRequest(target, 'GET', '/bench/ping');

  const trigger = async () => {
    const response = await httpsRequest(target, 'POST', `/bench/revoke?sub=${revokedSubject}`);
    if (response.status !== 200) {
      throw new Error(`the revoke request failed with status ${response.status}`);
    }
  };
  return { trigger, stop: async () => agent.destroy() };
}

/** Measures the delay from the revoke trigger to each connection's close, in milliseconds. */
export async function measureRevocation(job: LoadJob): Promise<Measurement[]> {
  const { connections: wanted, connectConcurrency } = job.sizes.revocation;
  const { trigger, stop } = job.system === 'portcullis' ? await prepareCliTrigger(job) : await preparePeerTrigger(job);

  try {
    const open: BenchConnection[] = [];
    let firstError = '';
    await runPool(wanted, connectConcurrency, async () => {
      try {
        open.push(await connect(job));
        return true;
      } catch (error) {
        firstError ||= (error as Error).message;
        return false;
      }
    });
    if (open.length < wanted) {
      throw new Error(`only ${open.length} of ${wanted} connections opened; first error: ${firstError}`);
    }
    await sleep(500);
    reportProgress(`${open.length} connections open; revoking`);

    const closeTimes: number[] = [];
    open.forEach((connection) => connection.closed.then((at) => closeTimes.push(at)));
    const cpu = new CpuWindow(job.serverPid);
    const startedAt = performance.now();
    await trigger();
    const commandMs = performance.now() - startedAt;
    await Promise.race([Promise.all(open.map((connection) => connection.closed)), sleep(closeWaitMs)]);
    const usage = cpu.finish();

    const latencies = closeTimes.map((at) => at - startedAt);
    if (latencies.length === 0) {
      throw new Error(`no connection closed within ${closeWaitMs} ms of the revocation`);
    }
    return [
      { metric: 'latency_min', value: Math.min(...latencies), unit: 'ms' },
      { metric: 'latency_p50', value: percentile(latencies, 0.5), unit: 'ms' },
      { metric: 'latency_p99', value: percentile(latencies, 0.99), unit: 'ms' },
      { metric: 'latency_max', value: Math.max(...latencies), unit: 'ms' },
      { metric: 'trigger_returned', value: commandMs, unit: 'ms' },
      { metric: 'closed', value: latencies.length, unit: 'connections' },
      ...cpuRows(usage),
    ];
  } finally {
    await stop();
  }
}
