// Two gateway processes and one auth process on loopback, sharing PostgreSQL and Redis, behind a
// load balancer that sends browsers' upgrades to gateway B. A device on gateway A and a browser on
// gateway B exchange messages. A revocation made on A closes the browser's socket on B. A device's
// handshake rate limit counts handshakes on both gateways.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import type { Page } from 'playwright-core';

import { loadTlsMaterial } from '../../src/tls/dev-ca.ts';
import { launchChromium, type TestBrowser } from '../support/chromium.ts';
import { startLoadBalancer, type LoadBalancer } from '../support/load-balancer.ts';
import { startNodeProcess, type NodeProcess } from '../support/node-process.ts';
import { createTestSchema, type TestSchema } from '../support/postgres.ts';
import { deleteKeys, sharedRedisUrl, uniqueKeyPrefix } from '../support/redis.ts';
import { addDevice, addUser, deviceToken, freePort, runServerCli, temporaryDataDir, type TestServer } from '../support/server.ts';
import { commandsChannel, openDeviceSocket, probeDeviceConnection, type GatewaySocket } from '../support/websocket.ts';

const username = 'alice';
const password = 'a cluster test password';
const sensorId = 'hall-sensor';
const stepTimeout = { timeout: 90_000 };
// Low enough that the test reaches it with a few handshakes spread over both gateways.
const handshakesPerClient = 4;

let schema: TestSchema;
let keyPrefix: string;
let auth: NodeProcess;
let gatewayA: NodeProcess;
let gatewayB: NodeProcess;
let balancer: LoadBalancer;
let browser: TestBrowser;
let page: Page;
let sensorSocket: GatewaySocket | undefined;
let serverCertFile: string;

/** The node processes fit the helpers that take a `TestServer`; none of them reads `running`. */
const asServer = (node: NodeProcess) => node as unknown as TestServer;

before(async () => {
  schema = await createTestSchema();
  keyPrefix = uniqueKeyPrefix('three-processes');
  const tlsDir = temporaryDataDir();
  await loadTlsMaterial({ dataDir: tlsDir, certFile: null, keyFile: null });
  serverCertFile = path.join(tlsDir, 'tls/server.pem');
  const serverKeyFile = path.join(tlsDir, 'tls/server-key.pem');
  const caFile = path.join(tlsDir, 'ca.pem');

  const [balancerPort, authPort, portA, portB] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const publicUrl = `https://localhost:${balancerPort}`;
  const shared = [
    '--redis-url', sharedRedisUrl, '--redis-key-prefix', keyPrefix,
    '--tls-cert', serverCertFile, '--tls-key', serverKeyFile, '--drain-window', '0',
  ];
  const gatewayArgs = ['--role', 'gateway', '--handshake-rate-client', String(handshakesPerClient), ...shared];
  const node = (port: number, args: string[]) => startNodeProcess({ port, publicUrl, databaseUrl: schema.url, caFile, args });

  // The auth process runs the migrations first; the gateways then start side by side.
  auth = await node(authPort, ['--role', 'auth', ...shared]);
  [gatewayA, gatewayB] = await Promise.all([node(portA, gatewayArgs), node(portB, gatewayArgs)]);
  balancer = await startLoadBalancer({
    port: balancerPort,
    cert: fs.readFileSync(serverCertFile, 'utf8'),
    key: fs.readFileSync(serverKeyFile, 'utf8'),
    ca: fs.readFileSync(caFile, 'utf8'),
    authPort,
    gatewayPort: portB,
  });

  await addUser(asServer(auth), username, password);
  browser = await launchChromium([serverCertFile]);
  page = await browser.context.newPage();
}, stepTimeout);

after(async () => {
  sensorSocket?.close();
  await browser?.close();
  await balancer?.close();
  await Promise.all([gatewayA?.close(), gatewayB?.close()]);
  await auth?.close();
  await deleteKeys(sharedRedisUrl, keyPrefix).catch(() => undefined);
  await schema?.drop();
});

function logEvents(node: NodeProcess, event: string): Array<Record<string, unknown>> {
  return node.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.event === event);
}

async function waitForLog(node: NodeProcess, event: string, matches: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found = logEvents(node, event).find(matches);
    if (found) {
      return found;
    }
    if (Date.now() > deadline) {
      throw new Error(`no ${event} log line that matches`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('roles serve only their routes', stepTimeout, async () => {
  const discovery = await auth.fetch(`https://localhost:${auth.port}/.well-known/oauth-authorization-server`);
  assert.equal(discovery.status, 200);
  assert.equal((await gatewayA.fetch(`https://localhost:${gatewayA.port}/.well-known/oauth-authorization-server`)).status, 404);
  assert.equal((await gatewayB.fetch(`https://localhost:${gatewayB.port}/login`)).status, 404);

  const sensor = await addDevice(asServer(auth), 'auth-only-probe');
  const outcome = await probeDeviceConnection(auth.port, auth.caPem, sensor.client_id, await deviceToken(asServer(auth), sensor));
  assert.deepEqual([outcome.status, outcome.error], [404, 'not_found']);
});

test('device and browser exchange across gateways', stepTimeout, async () => {
  const sensor = await addDevice(asServer(auth), sensorId, ['--owner', username]);
  const backend = await addDevice(asServer(auth), 'hall-backend', ['--scope', `publish:${commandsChannel(sensorId)}`]);

  await page.goto(`${auth.url}/`);
  await page.locator('body[data-ready="true"]').waitFor();
  await page.click('#login-link');
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', password);
  await page.click('#login-submit');
  await page.waitForURL(`${auth.url}/`);
  await page.click('#connect');
  await page.waitForFunction(() => document.getElementById('status')?.textContent === 'open');
  // A node writes its log in batches, at least once a second, so the line may come a little later.
  await waitForLog(gatewayB, 'handshake.accepted', (line) => line.kind === 'browser');
  assert.equal(logEvents(gatewayA, 'handshake.accepted').filter((line) => line.kind === 'browser').length, 0);

  await page.fill('#channel', `devices/${sensorId}/#`);
  await page.click('#subscribe');
  await page.locator('#subscriptions li', { hasText: `devices/${sensorId}/#` }).waitFor();

  // Device to browser: published on gateway A, delivered on gateway B through Redis.
  sensorSocket = await openDeviceSocket(asServer(gatewayA), { clientId: sensorId, accessToken: await deviceToken(asServer(auth), sensor) });
  const commands = commandsChannel(sensorId);
  assert.equal((await sensorSocket.request({ type: 'subscribe', channel: commands })).type, 'subscribed');
  assert.equal((await sensorSocket.request({ type: 'publish', channel: `devices/${sensorId}/telemetry`, data: { lux: 310 } })).type, 'published');
  await page.locator('#messages li', { hasText: '"lux":310' }).waitFor();

  // Backend to device: published on gateway B, delivered on gateway A.
  const published = await gatewayB.fetch(`https://localhost:${gatewayB.port}/api/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await deviceToken(asServer(auth), backend)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel: commands, data: { blink: true } }),
  });
  assert.equal(published.status, 202);
  const command = await sensorSocket.nextFrameWhere((frame) => frame.type === 'message' && frame.channel === commands, 'the command on gateway A');
  assert.deepEqual(command.data, { blink: true });
});

test('revocation on A closes socket on B', stepTimeout, async () => {
  const listed = await runServerCli(asServer(gatewayB), ['sessions', 'list', '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  const browserConnection = (JSON.parse(listed.stdout) as Array<{ kind: string; grant_id: string | null }>).find((connection) => connection.kind === 'browser');
  assert.ok(browserConnection?.grant_id, listed.stdout);

  const revoked = await runServerCli(asServer(gatewayA), ['sessions', 'revoke', browserConnection.grant_id]);
  assert.equal(revoked.code, 0, revoked.stderr);

  const closed = await waitForLog(gatewayB, 'connection.revoked', (line) => line.sub === username);
  assert.equal(closed.reason, 'operator');
  await page.waitForFunction(() => document.getElementById('status')?.textContent !== 'open');
  assert.equal(logEvents(gatewayA, 'connection.revoked').filter((line) => line.sub === username).length, 0);
});

test('handshake rate limit shared by gateways', stepTimeout, async () => {
  const counter = await addDevice(asServer(auth), 'rate-counter');
  const token = await deviceToken(asServer(auth), counter);
  const handshake = (node: NodeProcess) => probeDeviceConnection(node.port, node.caPem, counter.client_id, token);

  const allowed = [];
  for (let attempt = 0; attempt < handshakesPerClient; attempt += 1) {
    allowed.push((await handshake(attempt % 2 === 0 ? gatewayA : gatewayB)).status);
  }
  assert.deepEqual(allowed, [101, 101, 101, 101]);

  const limited = await handshake(gatewayA);
  assert.deepEqual([limited.status, limited.error], [429, 'rate_limited']);
});
