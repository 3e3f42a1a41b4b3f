// Captures, for the whole test run, every log line a Portcullis process writes and every secret the
// tests handle. `npm test` sets PORTCULLIS_TEST_CAPTURE_DIR and, once every test has finished, fails
// the run if any captured secret appears in any captured log line (scripts/check-log-hygiene.ts).
// Without that variable, as when one file runs alone, nothing is captured.
import fs from 'node:fs';
import path from 'node:path';

const captureDir = process.env.PORTCULLIS_TEST_CAPTURE_DIR;

/** Shorter values are too likely to occur by chance in a log line to be worth a search. */
const shortestSearchedSecret = 8;

function append(kind: 'logs' | 'secrets', lines: string[]): void {
  if (captureDir === undefined || lines.length === 0) {
    return;
  }
  // One file per process: appends from several test processes never interleave inside a line.
  fs.appendFileSync(path.join(captureDir, `${kind}-${process.pid}.jsonl`), lines.map((line) => `${line}\n`).join(''));
}

/**
 * Records a token, cookie value, client secret, password or private key that a test obtained, so the
 * final check can prove no log line carries it.
 */
export function rememberSecret(value: string | null | undefined): void {
  if (typeof value !== 'string' || value.length < shortestSearchedSecret) {
    return;
  }
  append('secrets', [JSON.stringify(value)]);
}

/** Records log lines written by a Portcullis process; `source` names the process in a failure report. */
export function captureLogLines(source: string, lines: string[]): void {
  append('logs', lines.map((line) => JSON.stringify({ source, line })));
}
