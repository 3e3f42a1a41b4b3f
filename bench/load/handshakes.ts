// Scenarios 1, 2 and 7: connectors that each open a connection, close it, wait for the close and
// start again, for a warm-up and then a measured window.
import { reportProgress } from '../child.ts';
import { CpuWindow, cpuRows } from '../proc.ts';
import { connect } from './clients.ts';
import { measureProofSigningCpu } from './handshake-proofs.ts';
import type { LoadJob, Measurement } from './job.ts';
import { sleep } from './stats.ts';

// A connector whose handshake failed waits this long, so that a rejecting server is not hammered in a tight loop.
const retryPauseMs = 10;
// Proofs signed one at a time, before the connectors start, to measure what signing one costs.
const signingSamples = 200;

/** Measures completed handshakes per second with `sizes.handshakes.concurrency` connectors. */
export async function measureHandshakes(job: LoadJob): Promise<Measurement[]> {
  const { concurrency, warmupMs, durationMs } = job.sizes.handshakes;
  const proofCpuUs = job.dpopKey ? await measureProofSigningCpu(job, signingSamples) : undefined;
  const startedAt = performance.now();
  const stopAt = startedAt + warmupMs + durationMs;
  let completed = 0;
  let failed = 0;
  let firstError = '';

  const connector = async () => {
    while (performance.now() < stopAt) {
      try {
        const connection = await connect(job);
        connection.close();
        await connection.closed;
        completed += 1;
      } catch (error) {
        failed += 1;
        firstError ||= (error as Error).message;
        await sleep(retryPauseMs);
      }
    }
  };

  const progress = setInterval(() => {
    const seconds = (performance.now() - startedAt) / 1_000;
    reportProgress(`${seconds.toFixed(0)} s: ${completed} handshakes, ${failed} failed`);
  }, 1_000);

  const running = Array.from({ length: concurrency }, connector);
  await sleep(warmupMs);
  const window = { completed, failed, cpu: new CpuWindow(job.serverPid) };
  await sleep(durationMs);
  const measured = { completed: completed - window.completed, failed: failed - window.failed };
  const usage = window.cpu.finish();
  await Promise.all(running);
  clearInterval(progress);

  if (measured.completed === 0) {
    throw new Error(`no handshake completed; first error: ${firstError || 'none'}`);
  }
  if (firstError) {
    reportProgress(`first handshake error: ${firstError}`);
  }

  return [
    { metric: 'rate', value: measured.completed / (usage.wallMs / 1_000), unit: 'handshakes/s' },
    { metric: 'failed', value: measured.failed, unit: 'handshakes' },
    { metric: 'server_cpu_per_handshake', value: (1_000 * usage.serverMs) / measured.completed, unit: 'µs' },
    { metric: 'load_cpu_per_handshake', value: (1_000 * usage.loadMs) / measured.completed, unit: 'µs' },
    ...(proofCpuUs === undefined ? [] : [{ metric: 'load_cpu_per_proof', value: proofCpuUs, unit: 'µs' }]),
    ...cpuRows(usage),
  ];
}
