// Scenario 6: client-credentials token requests per second against Portcullis's token endpoint,
// over kept-alive HTTPS connections, one request in flight per connection.
import https from 'node:https';

import { reportProgress } from '../child.ts';
import { basicAuthorization, httpsRequest } from '../https-client.ts';
import { CpuWindow, cpuRows } from '../proc.ts';
import type { LoadJob, Measurement } from './job.ts';
import { percentile, sleep } from './stats.ts';

/** Measures token responses per second and their latency. */
export async function measureTokenEndpoint(job: LoadJob): Promise<Measurement[]> {
  const { concurrency, warmupMs, durationMs } = job.sizes.tokenEndpoint;
  const client = job.tokenClient!;
  const agent = new https.Agent({ keepAlive: true, maxSockets: concurrency });
  const target = { port: job.port, caPem: job.caPem, agent };
  const headers = {
    authorization: basicAuthorization(client.clientId, client.clientSecret),
    'content-type': 'application/x-www-form-urlencoded',
  };
  const body = new URLSearchParams({ grant_type: 'client_credentials' }).toString();

  const startedAt = performance.now();
  const stopAt = startedAt + warmupMs + durationMs;
  let windowStart = Number.POSITIVE_INFINITY;
  let windowEnd = Number.POSITIVE_INFINITY;
  const latencies: number[] = [];
  let failed = 0;
  let total = 0;
  let firstError = '';

  const worker = async () => {
    while (performance.now() < stopAt) {
      const sentAt = performance.now();
      try {
        const response = await httpsRequest(target, 'POST', '/oauth/token', headers, body);
        if (response.status !== 200) {
          throw new Error(`status ${response.status}`);
        }
        total += 1;
        if (sentAt >= windowStart && performance.now() <= windowEnd) {
          latencies.push(performance.now() - sentAt);
        }
      } catch (error) {
        failed += 1;
        firstError ||= (error as Error).message;
      }
    }
  };

  const progress = setInterval(() => reportProgress(`${total} tokens issued, ${failed} failed`), 1_000);
  const running = Array.from({ length: concurrency }, worker);
  await sleep(warmupMs);
  windowStart = performance.now();
  const cpu = new CpuWindow(job.serverPid);
  const totalAtStart = total;
  const failedAtStart = failed;
  await sleep(durationMs);
  windowEnd = performance.now();
  const measured = total - totalAtStart;
  const measuredFailures = failed - failedAtStart;
  const usage = cpu.finish();
  await Promise.all(running);
  clearInterval(progress);
  agent.destroy();

  if (measured === 0) {
    throw new Error(`no token was issued; first error: ${firstError || 'none'}`);
  }
  return [
    { metric: 'rate', value: measured / (usage.wallMs / 1_000), unit: 'tokens/s' },
    { metric: 'latency_p50', value: percentile(latencies, 0.5), unit: 'ms' },
    { metric: 'latency_p99', value: percentile(latencies, 0.99), unit: 'ms' },
    { metric: 'failed', value: measuredFailures, unit: 'requests' },
    { metric: 'server_cpu_per_token', value: (1_000 * usage.serverMs) / measured, unit: 'µs' },
    ...cpuRows(usage),
  ];
}
