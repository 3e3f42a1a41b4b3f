// Runs `portcullis sessions revoke <grant-id>` on request, inside a process that has loaded the CLI
// beforehand. Arguments: data directory, grant id.
import { exitWithHarness, sendToHarness } from '../child.ts';
import { main } from '../../src/cli/main.ts';

const [dataDir, grantId] = process.argv.slice(2);

exitWithHarness(120_000);
process.on('message', async (message: { type?: string }) => {
  if (message.type !== 'revoke') {
    return;
  }
  const exitCode = await main(['sessions', 'revoke', grantId, '--data-dir', dataDir]);
  await sendToHarness({ type: 'revoked', exitCode });
});
await sendToHarness({ type: 'ready', port: 0, pid: process.pid });
