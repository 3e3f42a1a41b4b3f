// `portcullis device connect` run as a real process against a real server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { captureLogLines } from '../support/capture.ts';
import { addDevice, freePort, repositoryRoot, runCli, startTestServer, type TestServer } from '../support/server.ts';

// Safety stop for the long-running command; no assertion depends on timing.
const commandLimitMs = 60_000;

let server: TestServer;
let device: { client_id: string; client_secret: string };

before(async () => {
  server = await startTestServer();
  device = await addDevice(server, 'cli-device');
});

after(async () => {
  await server.close();
});

function connectArgs(...extra: string[]): string[] {
  return ['device', 'connect', device.client_id, '--public-url', server.url, ...extra];
}

test('once prints the welcome frame', async () => {
  const result = await runCli(server.dataDir, connectArgs('--secret-stdin', '--once'), `${device.client_secret}\n`);

  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  const welcome = JSON.parse(lines[0]) as { type: string; sub: string; client_id: string };
  assert.equal(welcome.type, 'welcome');
  assert.equal(welcome.sub, device.client_id);
  assert.match(result.stderr, /^portcullis device: connecting \(started\)$/m);
  assert.match(result.stderr, /^portcullis device: open \(welcome\)$/m);
  assert.equal(`${result.stdout}${result.stderr}`.includes(device.client_secret), false, 'the secret was printed');
});

test('dpop connects a device that requires DPoP', async () => {
  // The auth server refuses every token request of this device that carries no proof.
  const bound = await addDevice(server, 'cli-dpop-device', ['--dpop-required']);
  const args = ['device', 'connect', bound.client_id, '--public-url', server.url, '--secret-stdin', '--once'];

  const withoutKey = await runCli(server.dataDir, args, `${bound.client_secret}\n`);
  const withKey = await runCli(server.dataDir, [...args, '--dpop'], `${bound.client_secret}\n`);

  assert.equal(withoutKey.code, 1);
  assert.equal(withKey.code, 0, withKey.stderr);
  const welcome = JSON.parse(withKey.stdout.trim()) as { type: string; client_id: string };
  assert.equal(welcome.type, 'welcome');
  assert.equal(welcome.client_id, bound.client_id);
});

test('once fails on an unreachable issuer', async () => {
  // A loopback port that was free a moment ago: the token request fails with a network error.
  const closedPort = await freePort();
  const result = await runCli(server.dataDir, connectArgs('--secret-stdin', '--once', '--issuer', `https://localhost:${closedPort}`), `${device.client_secret}\n`);

  assert.equal(result.code, 1);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, /reconnecting \(token_request_failed/);
  assert.match(result.stderr, /the first attempt failed: token_request_failed/);
});

test('wrong secret exits 1 with the code', async () => {
  const result = await runCli(server.dataDir, connectArgs('--secret-stdin', '--once'), 'not-the-secret\n');

  assert.equal(result.code, 1);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, /^portcullis device: stopped \(invalid_client\)$/m);
  assert.match(result.stderr, /stopped for good: invalid_client/);
});

// Arguments are built when the test runs, after `before` registered the device.
for (const [name, args, input, message] of [
  ['without --secret-stdin', () => connectArgs('--once'), '', /pass --secret-stdin/],
  ['with empty stdin', () => connectArgs('--secret-stdin', '--once'), '', /held no client secret/],
  ['with a ws:// url', () => connectArgs('--secret-stdin', '--url', 'ws://localhost:1/ws'), 'x\n', /--url must start with wss:\/\//],
  ['with an unknown action', () => ['device', 'listen', 'x'], '', /Unknown device command "listen"/],
] as const) {
  test(`exits 2 ${name}`, async () => {
    const result = await runCli(server.dataDir, args(), input);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, message);
    assert.equal(result.stdout, '');
  });
}

test('sigint after frames exits 0', async () => {
  const child = spawn(process.execPath, [path.join(repositoryRoot, 'bin/portcullis.js'), ...connectArgs('--secret-stdin'), '--data-dir', server.dataDir], { stdio: ['pipe', 'pipe', 'pipe'] });
  const killer = setTimeout(() => child.kill('SIGKILL'), commandLimitMs);
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
    if (stdout.includes('\n')) {
      child.kill('SIGINT');
    }
  });
  child.stdin.end(`${device.client_secret}\n`);

  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearTimeout(killer);
  captureLogLines('cli device connect', stderr.split('\n').filter(Boolean));

  assert.equal(code, 0, stderr);
  assert.equal((JSON.parse(stdout.split('\n')[0]) as { type: string }).type, 'welcome');
  assert.match(stderr, /^portcullis device: stopped \(closed\)$/m);
});
