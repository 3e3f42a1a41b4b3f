// Runs the whole benchmark harness at tiny sizes: every server and load process starts, every
// scenario produces its rows, and the results files are written. It asserts no timing.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';

import { notMeasured, scenarios, smokeSizes, systems, systemsOf } from '../../bench/config.ts';
import { runBench, type BenchRun } from '../../bench/harness.ts';
import { writeResults } from '../../bench/report.ts';

let run: BenchRun;
const progress: string[] = [];

before(async () => {
  run = await runBench({ mode: 'smoke', sizes: smokeSizes, log: (line) => progress.push(line) });
}, { timeout: 170_000 });

test('harness runs every job', () => {
  assert.deepEqual(run.failures, [], progress.join('\n'));
});

test('harness skips only the unmeasurable pairs', () => {
  const skipped = scenarios.flatMap((scenario) => systems.filter((system) => !systemsOf(scenario).includes(system)).map((system) => `${scenario} ${system}`));
  assert.deepEqual(skipped, notMeasured.map((entry) => `${entry.scenario} ${entry.system}`));
  assert.deepEqual(skipped, ['token-endpoint raw-ws', 'token-endpoint ws+jose', 'token-endpoint socket.io']);
});

test('harness rows cover every pair', () => {
  for (const scenario of scenarios) {
    for (const system of systemsOf(scenario)) {
      const count = run.rows.filter((row) => row.scenario === scenario && row.system === system).length;
      assert.ok(count > 0, `no rows for ${scenario} on ${system}`);
    }
  }
});

test('harness values are finite', () => {
  for (const row of run.rows) {
    assert.ok(Number.isFinite(row.value), `${row.scenario} ${row.system} ${row.metric} is ${row.value}`);
  }
});

test('harness writes json and markdown', () => {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-bench-results-'));
  try {
    const files = writeResults(run, directory);

    const written = JSON.parse(fs.readFileSync(files.jsonFile, 'utf8')) as unknown[];
    assert.deepEqual(written, run.rows);
    assert.match(path.basename(files.jsonFile), /^\d{4}-\d{2}-\d{2}-smoke\.json$/);
    const markdown = fs.readFileSync(files.markdownFile, 'utf8');
    assert.match(markdown, /^## Targets$/m);
    assert.match(markdown, /^\| Revocation p99 < 50 ms \|/m);
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
});
