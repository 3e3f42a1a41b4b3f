// The load process: receives one job from the harness over IPC, runs it, sends back the rows and exits.
import { exitWithHarness, sendToHarness } from '../child.ts';
import type { ResultRow, ScenarioId } from '../config.ts';
import { measureFanout } from './fanout.ts';
import { measureHandshakes } from './handshakes.ts';
import type { LoadJob, Measurement } from './job.ts';
import { measureMemory } from './memory.ts';
import { measureRevocation } from './revocation.ts';
import { measureTokenEndpoint } from './token-endpoint.ts';

const measurements: Record<ScenarioId, (job: LoadJob) => Promise<Measurement[]>> = {
  'handshakes-wss': measureHandshakes,
  'handshakes-plain': measureHandshakes,
  fanout: measureFanout,
  memory: measureMemory,
  revocation: measureRevocation,
  'token-endpoint': measureTokenEndpoint,
  'handshakes-dpop': measureHandshakes,
};

process.once('message', async (job: LoadJob) => {
  exitWithHarness(job.sizes.jobTimeoutMs);
  try {
    const measured = await measurements[job.scenario](job);
    const rows: ResultRow[] = measured.map((row) => ({ scenario: job.scenario, system: job.system, ...row }));
    await sendToHarness({ type: 'result', rows });
  } catch (error) {
    await sendToHarness({ type: 'failed', message: (error as Error).message });
  }
  // Open sockets would keep the process alive, and the harness has the rows already.
  process.disconnect();
  process.exit(0);
});

await sendToHarness({ type: 'ready', port: 0, pid: process.pid });
