// The last step of `npm test`: fails when any secret the tests handled, or anything shaped like a
// secret, appears in a log line that a Portcullis process wrote during the run.
import fs from 'node:fs';
import path from 'node:path';

import { LeakScanner, type Leak } from '../test/support/log-hygiene.ts';

const reportedLeaks = 20;

function readJsonLines<T>(directory: string, prefix: string): T[] {
  const files = fs.readdirSync(directory).filter((name) => name.startsWith(prefix) && name.endsWith('.jsonl'));
  return files.flatMap((name) => fs.readFileSync(path.join(directory, name), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as T));
}

function main(directory: string, requiredSources: string[]): number {
  const secrets = readJsonLines<string>(directory, 'secrets-');
  const logs = readJsonLines<{ source: string; line: string }>(directory, 'logs-');

  // An empty capture would pass every check, so it counts as a failure of the check itself.
  if (secrets.length === 0 || logs.length === 0) {
    console.error(`Log hygiene: the run captured ${logs.length} log lines and ${secrets.length} secrets; the capture is broken.`);
    return 1;
  }
  const missing = requiredSources.filter((kind) => !logs.some((entry) => entry.source.startsWith(`${kind} `)));
  if (missing.length > 0) {
    console.error(`Log hygiene: no log line was captured from ${missing.join(', ')} processes; the capture of those is broken.`);
    return 1;
  }

  const scanner = new LeakScanner(new Set(secrets));
  const leaks: Leak[] = logs.flatMap((entry) => scanner.scan(entry.source, entry.line));
  if (leaks.length === 0) {
    console.log(`Log hygiene: ${logs.length} log lines hold none of the ${new Set(secrets).size} secrets the tests handled, and nothing shaped like a secret.`);
    return 0;
  }

  console.error(`Log hygiene: ${leaks.length} log lines carry a secret. First ${Math.min(leaks.length, reportedLeaks)}:`);
  for (const leak of leaks.slice(0, reportedLeaks)) {
    console.error(`  ${leak.finding} in ${leak.line} (from ${leak.source})`);
  }
  return 1;
}

// `--require in-process,node,cli` names the kinds of process that must have contributed lines, which a
// run of the whole suite does and a run of a few files may not.
const [directory, flag, kinds] = process.argv.slice(2);
if (directory === undefined || (flag !== undefined && (flag !== '--require' || kinds === undefined))) {
  console.error('usage: check-log-hygiene.ts CAPTURE_DIR [--require KIND,KIND…]');
  process.exit(2);
}
process.exit(main(directory, kinds === undefined ? [] : kinds.split(',')));
