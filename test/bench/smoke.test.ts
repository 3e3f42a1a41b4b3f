// Runs the whole benchmark harness at tiny sizes: every server and load process starts, every
// scenario produces its rows, and the results files are written. It asserts no timing. A second part
// checks that the ws+jose peer refuses the DPoP proofs that Portcullis refuses, so that the DPoP
// scenario compares the same work.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';

import WebSocket from 'ws';

import { notMeasured, scenarios, smokeSizes, systems, systemsOf } from '../../bench/config.ts';
import { createBenchTls, createPeerTokenKeys, signPeerToken } from '../../bench/credentials.ts';
import { accessTokenHash, generateProofKeyPair, handshakeHtu, importProofSigner, signProof } from '../../bench/dpop.ts';
import { runBench, type BenchRun } from '../../bench/harness.ts';
import { startChild, stopChild, waitForMessage } from '../../bench/processes.ts';
import { compareDpopWithBearer, writeResults } from '../../bench/report.ts';
import { rememberSecret } from '../support/capture.ts';

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
  assert.deepEqual(skipped, [
    'token-endpoint raw-ws',
    'token-endpoint ws+jose',
    'token-endpoint socket.io',
    'handshakes-dpop raw-ws',
    'handshakes-dpop socket.io',
  ]);
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
    assert.match(markdown, /^## DPoP next to bearer$/m);
    assert.match(markdown, /^\| portcullis \| [\d,.]+ \| [\d,.]+ \| [\d.]+× \|/m);
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
});

test('harness dpop handshakes all pass', () => {
  for (const system of systemsOf('handshakes-dpop')) {
    const failed = run.rows.find((row) => row.scenario === 'handshakes-dpop' && row.system === system && row.metric === 'failed');
    assert.equal(failed?.value, 0, `${system}: ${progress.join('\n')}`);
  }
});

test('harness compares dpop with bearer', () => {
  const comparisons = compareDpopWithBearer(run.rows);

  assert.deepEqual(comparisons.map((comparison) => comparison.system), ['ws+jose', 'portcullis']);
  for (const comparison of comparisons) {
    assert.ok(Number.isFinite(comparison.rateRatio), `${comparison.system} rate ratio is ${comparison.rateRatio}`);
    assert.ok(Number.isFinite(comparison.serverCpuRatio), `${comparison.system} CPU ratio is ${comparison.serverCpuRatio}`);
    assert.notEqual(comparison.proofSigningCpu, undefined, `${comparison.system} has no signing CPU`);
    assert.ok(comparison.proofSigningCpu! > 0, `${comparison.system} signing CPU is ${comparison.proofSigningCpu}`);
  }
});

test('ws+jose peer checks dpop proofs', async () => {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-bench-peer-'));
  const tls = await createBenchTls(directory);
  const tokenKeys = await createPeerTokenKeys();
  const peer = startChild({
    script: 'bench/servers/ws-peer.ts',
    args: [JSON.stringify({ plain: false, certFile: tls.certFile, keyFile: tls.keyFile, publicJwk: tokenKeys.publicJwk, deadlineMs: 60_000 })],
    label: 'ws+jose peer',
  });

  try {
    const { port } = await waitForMessage(peer, 'ready', 30_000);
    const proofKey = await generateProofKeyPair();
    const signer = await importProofSigner(proofKey);
    const otherSigner = await importProofSigner(await generateProofKeyPair());
    const boundToken = await signPeerToken(tokenKeys, 'bench-device', 'bench-device', { jkt: proofKey.jkt });
    const bearerToken = await signPeerToken(tokenKeys, 'bench-device', 'bench-device');
    rememberSecret(boundToken);
    rememberSecret(bearerToken);
    const htu = handshakeHtu(port);
    const proofFor = (token: string, claims: { htm?: string; htu?: string } = {}, by = signer) => signProof(by, { htm: 'GET', htu, ath: accessTokenHash(token), ...claims });
    const handshake = (headers: Record<string, string>) => openStatus(port, tls.caPem, headers);

    const validProof = await proofFor(boundToken);
    assert.equal(await handshake({ Authorization: `DPoP ${boundToken}`, DPoP: validProof }), 101);
    const refused: Array<[string, Record<string, string>]> = [
      ['replayed proof', { Authorization: `DPoP ${boundToken}`, DPoP: validProof }],
      ['no proof', { Authorization: `DPoP ${boundToken}` }],
      ['bound token as bearer', { Authorization: `Bearer ${boundToken}` }],
      ['unbound token under DPoP', { Authorization: `DPoP ${bearerToken}`, DPoP: await proofFor(bearerToken) }],
      ['wss htu', { Authorization: `DPoP ${boundToken}`, DPoP: await proofFor(boundToken, { htu: htu.replace('https:', 'wss:') }) }],
      ['htm POST', { Authorization: `DPoP ${boundToken}`, DPoP: await proofFor(boundToken, { htm: 'POST' }) }],
      ['ath of another token', { Authorization: `DPoP ${boundToken}`, DPoP: await proofFor(bearerToken) }],
      ['another key', { Authorization: `DPoP ${boundToken}`, DPoP: await proofFor(boundToken, {}, otherSigner) }],
    ];
    for (const [name, headers] of refused) {
      assert.equal(await handshake(headers), 401, name);
    }
    assert.equal(await handshake({ Authorization: `Bearer ${bearerToken}` }), 101);
  } finally {
    await stopChild(peer);
    fs.rmSync(directory, { recursive: true, force: true });
  }
});

/** Opens one wss connection to the peer with `headers` and returns 101 when it opened, else the response status. */
function openStatus(port: number, caPem: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca: caPem, headers: { 'X-Client-Id': 'bench-device', ...headers } });
    socket.once('open', () => {
      socket.close();
      resolve(101);
    });
    socket.once('unexpected-response', (request, response) => {
      request.destroy();
      resolve(response.statusCode ?? 0);
    });
    socket.once('error', reject);
  });
}
