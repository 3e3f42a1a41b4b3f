// Scenario 4: the server's resident memory per idle authenticated connection.
import { reportProgress } from '../child.ts';
import { countOpenFiles, readOpenFileLimit, readRssBytes } from '../proc.ts';
import { connect, type BenchConnection } from './clients.ts';
import type { LoadJob, Measurement } from './job.ts';
import { median, runPool, sleep } from './stats.ts';

const warmupConnections = 50;
// Descriptors kept free in each process for what else it opens (log files, DNS, the database).
const spareDescriptors = 64;
// After this many failed connections the scenario stops opening more and reports what it reached,
// which is how an exhausted file-descriptor or port range shows up.
const maxFailures = 100;

/** Samples the server's RSS five times, 200 ms apart, and returns the median in bytes. */
async function sampleRss(pid: number): Promise<number> {
  const samples: number[] = [];
  for (let index = 0; index < 5; index += 1) {
    samples.push(readRssBytes(pid));
    await sleep(200);
  }
  return median(samples);
}

/**
 * Returns how many more connections both processes can open before they reach their open-file
 * limit. Past it, a server's accept fails with EMFILE, which crashes a Node server without an
 * 'error' listener, so the scenario stops short of it and reports the number it reached.
 */
function descriptorHeadroom(serverPid: number): { headroom: number; serverLimit: number | null; loadLimit: number | null } {
  const serverLimit = readOpenFileLimit(serverPid);
  const loadLimit = readOpenFileLimit(process.pid);
  const serverFree = (serverLimit ?? Number.POSITIVE_INFINITY) - countOpenFiles(serverPid) - spareDescriptors;
  const loadFree = (loadLimit ?? Number.POSITIVE_INFINITY) - countOpenFiles(process.pid) - spareDescriptors;
  return { headroom: Math.max(0, Math.min(serverFree, loadFree)), serverLimit, loadLimit };
}

/**
 * Measures (RSS with N open connections − RSS before them) / N. A first round of connections that
 * open and close loads the server's lazy code paths, so that the baseline already contains them.
 */
export async function measureMemory(job: LoadJob): Promise<Measurement[]> {
  const { connections: requested, connectConcurrency, settleMs } = job.sizes.memory;

  const warmup = await Promise.allSettled(Array.from({ length: Math.min(warmupConnections, requested) }, () => connect(job)));
  const warm = warmup.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  warm.forEach((connection) => connection.close());
  await Promise.all(warm.map((connection) => connection.closed));
  await sleep(settleMs);
  const baseline = await sampleRss(job.serverPid);

  const { headroom, serverLimit, loadLimit } = descriptorHeadroom(job.serverPid);
  const attempted = Math.min(requested, headroom);
  if (attempted < requested) {
    reportProgress(`opening ${attempted} instead of ${requested} connections: open-file limit ${serverLimit} for the server, ${loadLimit} for the load`);
  }

  const open: BenchConnection[] = [];
  let failed = 0;
  let firstError = '';
  const progress = setInterval(() => reportProgress(`${open.length} of ${attempted} connections open, ${failed} failed`), 1_000);
  await runPool(attempted, connectConcurrency, async () => {
    if (failed >= maxFailures) {
      return false;
    }
    try {
      open.push(await connect(job));
      return true;
    } catch (error) {
      failed += 1;
      firstError ||= (error as Error).message;
      return false;
    }
  });
  clearInterval(progress);
  if (firstError) {
    reportProgress(`${failed} connections failed; first error: ${firstError}`);
  }
  if (open.length === 0) {
    throw new Error(`no connection opened: ${firstError}`);
  }

  await sleep(settleMs);
  const loaded = await sampleRss(job.serverPid);
  // The server process ends after this job, so closing thousands of sockets one by one would only add time.
  return [
    { metric: 'rss_per_connection', value: (loaded - baseline) / open.length / 1024, unit: 'KiB' },
    { metric: 'connections', value: open.length, unit: 'connections' },
    { metric: 'connections_requested', value: requested, unit: 'connections' },
    { metric: 'rss_baseline', value: baseline / 2 ** 20, unit: 'MiB' },
    { metric: 'rss_loaded', value: loaded / 2 ** 20, unit: 'MiB' },
  ];
}
