// Telemetry from a device written with Python `websockets` reaches its owner's page in Debian's
// Chromium, another user's page is refused the device's channels, and the device receives a command.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import type { Page } from 'playwright-core';

import { launchChromium, type TestBrowser } from '../support/chromium.ts';
import { runPythonDevice } from '../support/python-device.ts';
import { addDevice, addUser, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { openDeviceSocket, type GatewaySocket } from '../support/websocket.ts';

const users = {
  alice: 'alice telemetry password',
  bob: 'bob telemetry password',
} as const;
type Username = keyof typeof users;

const meterId = 'meter-1';
const telemetryCount = 5;
// Upper bound on the whole script run. The script's own network timeouts are 10 s and 60 s.
const scriptKillAfterMs = 120_000;
// A safety stop for each step. No assertion depends on how long anything took.
const stepTimeout = { timeout: 150_000 };

/** One frame the page's socket received, or the close event, recorded by the page script. */
interface PageFrame {
  type: string;
  [field: string]: unknown;
}

/** The globals the page script below sets. */
interface PageGlobals {
  telemetryFrames: PageFrame[];
  telemetrySocket: WebSocket;
}

/** The one JSON line `telemetry_client.py` prints. */
interface PythonResult {
  subprotocol: string | null;
  welcome: PageFrame;
  subscribed: PageFrame;
  forbidden: PageFrame;
  published: PageFrame[];
  command: PageFrame;
}

let server: TestServer;
const browsers: TestBrowser[] = [];
const pages = {} as Record<Username, Page>;
let backend: GatewaySocket;
let device: { client_id: string; client_secret: string };

/**
 * Returns the page script that opens a WebSocket to the gateway with the CSRF subprotocol and records
 * every frame in `window.telemetryFrames`. It is a string: tsx would otherwise add its `__name`
 * helper to functions sent to the page, which the page does not have.
 */
function openSocketScript(url: string): string {
  return `(async () => {
  const session = await (await fetch('/session')).json();
  const frames = [];
  window.telemetryFrames = frames;
  const socket = new WebSocket(${JSON.stringify(url)}, ['portcullis.v1', 'portcullis.csrf.' + session.csrf_token]);
  window.telemetrySocket = socket;
  socket.addEventListener('message', (event) => frames.push(JSON.parse(event.data)));
  socket.addEventListener('close', (event) => frames.push({ type: 'closed', code: event.code, reason: event.reason }));
  await new Promise((resolve, reject) => {
    socket.addEventListener('open', resolve);
    socket.addEventListener('error', () => reject(new Error('the page socket failed to open')));
  });
})()`;
}

/** Logs in through the real login pages of the demo page. */
async function logIn(page: Page, username: Username): Promise<void> {
  await page.goto(`${server.url}/`);
  await page.locator('body[data-ready="true"]').waitFor();
  await page.click('#login-link');
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', users[username]);
  await page.click('#login-submit');
  await page.waitForURL(`${server.url}/`);
  await page.locator('body[data-ready="true"] #connect').waitFor({ state: 'visible' });
}

function framesOf(page: Page): Promise<PageFrame[]> {
  return page.evaluate(() => (window as unknown as PageGlobals).telemetryFrames);
}

function sendFromPage(page: Page, frame: Record<string, unknown>): Promise<void> {
  return page.evaluate((text) => (window as unknown as PageGlobals).telemetrySocket.send(text), JSON.stringify(frame));
}

/**
 * Waits until the page has recorded at least `count` frames whose fields equal those of `wanted`.
 * The predicate is a function, not a string: the page's CSP forbids the eval a string predicate needs.
 */
async function waitForFrames(page: Page, wanted: Record<string, unknown>, count = 1): Promise<void> {
  await page.waitForFunction(
    (argument) => ((window as unknown as Partial<PageGlobals>).telemetryFrames ?? [])
      .filter((frame) => Object.entries(argument.wanted).every(([field, value]) => frame[field] === value)).length >= argument.count,
    { wanted, count },
    { timeout: 60_000 },
  );
}

function messages(frames: PageFrame[]): PageFrame[] {
  return frames.filter((frame) => frame.type === 'message');
}


before(async () => {
  server = await startTestServer();
  await addUser(server, 'alice', users.alice);
  await addUser(server, 'bob', users.bob);
  device = await addDevice(server, meterId, ['--owner', 'alice']);
  const commander = await addDevice(server, 'command-backend', ['--scope', 'publish:devices/*/commands']);
  backend = await openDeviceSocket(server, { clientId: commander.client_id, accessToken: await deviceToken(server, commander) });

  // One browser per user, because both sessions use the same cookie name on the same origin.
  for (const username of ['alice', 'bob'] as const) {
    const browser = await launchChromium([path.join(server.dataDir, 'tls/server.pem')]);
    browsers.push(browser);
    pages[username] = await browser.context.newPage();
    await logIn(pages[username], username);
    await pages[username].evaluate(openSocketScript(`wss://localhost:${server.port}/ws`));
    await waitForFrames(pages[username], { type: 'welcome' });
  }
}, stepTimeout);

after(async () => {
  await backend?.close();
  for (const browser of browsers) {
    await browser.close();
  }
  await server?.close();
});

test('pages connect as their users', stepTimeout, async () => {
  const [alice] = await framesOf(pages.alice);
  const [bob] = await framesOf(pages.bob);

  assert.equal(alice.type, 'welcome');
  assert.equal(alice.sub, 'alice');
  assert.ok(String(alice.scope).split(' ').includes(`subscribe:devices/${meterId}/#`), `alice's scope lacks her meter: ${String(alice.scope)}`);
  assert.equal(bob.type, 'welcome');
  assert.equal(bob.sub, 'bob');
  assert.ok(!String(bob.scope).includes(meterId), `bob's scope names alice's meter: ${String(bob.scope)}`);
});

test('owner subscribes to her meter', stepTimeout, async () => {
  await sendFromPage(pages.alice, { type: 'subscribe', id: 'meter', channel: `devices/${meterId}/#` });
  await waitForFrames(pages.alice, { id: 'meter' });

  const reply = (await framesOf(pages.alice)).find((frame) => frame.id === 'meter');
  assert.deepEqual(reply, { type: 'subscribed', id: 'meter', channel: `devices/${meterId}/#` });
});

test('other user is refused the meter', stepTimeout, async () => {
  await sendFromPage(pages.bob, { type: 'subscribe', id: 'meter', channel: `devices/${meterId}/#` });
  await sendFromPage(pages.bob, { type: 'subscribe', id: 'own', channel: 'users/bob/#' });
  await waitForFrames(pages.bob, { id: 'own' });

  const frames = await framesOf(pages.bob);
  const refusal = frames.find((frame) => frame.id === 'meter');
  assert.equal(refusal?.type, 'error');
  assert.equal(refusal?.code, 'forbidden');
  assert.deepEqual(frames.find((frame) => frame.id === 'own'), { type: 'subscribed', id: 'own', channel: 'users/bob/#' });
});

test('python telemetry reaches the owner', stepTimeout, async () => {
  const run = runPythonDevice('telemetry_client.py', server, device, { extraArgs: ['--count', String(telemetryCount)], killAfterMs: scriptKillAfterMs });
  await waitForFrames(pages.alice, { type: 'message', channel: `devices/${meterId}/telemetry` }, telemetryCount);

  const telemetry = messages(await framesOf(pages.alice));
  assert.deepEqual(telemetry.map((frame) => frame.data), Array.from({ length: telemetryCount }, (_value, seq) => ({ seq, watts: 100 + seq })));
  for (const frame of telemetry) {
    assert.equal(frame.channel, `devices/${meterId}/telemetry`);
    assert.deepEqual(frame.publisher, { client_id: meterId, sub: meterId });
    assert.ok(Number.isInteger(frame.timestamp), `timestamp ${String(frame.timestamp)} is not epoch milliseconds`);
  }

  // The device subscribed before it published, so it is listening for this command now.
  backend.send({ type: 'publish', id: 'cmd', channel: `devices/${meterId}/commands`, data: { action: 'report', interval_s: 30 } });
  assert.deepEqual(await backend.nextFrame(), { type: 'published', id: 'cmd', channel: `devices/${meterId}/commands` });

  const finished = await run;
  assert.equal(finished.code, 0, `telemetry_client.py failed:\n${finished.stderr}`);
  const result = JSON.parse(finished.stdout.trim()) as PythonResult;
  assert.equal(result.subprotocol, 'portcullis.v1');
  assert.equal(result.welcome.client_id, meterId);
  assert.deepEqual(result.subscribed, { type: 'subscribed', id: 'sub-1', channel: `devices/${meterId}/commands` });
  assert.equal(result.forbidden.type, 'error');
  assert.equal(result.forbidden.id, 'foreign-1');
  assert.equal(result.forbidden.code, 'forbidden');
  assert.deepEqual(result.published, Array.from({ length: telemetryCount }, (_value, seq) => ({ type: 'published', id: seq, channel: `devices/${meterId}/telemetry` })));
  assert.equal(result.command.type, 'message');
  assert.equal(result.command.channel, `devices/${meterId}/commands`);
  assert.deepEqual(result.command.data, { action: 'report', interval_s: 30 });
  assert.deepEqual(result.command.publisher, { client_id: 'command-backend', sub: 'command-backend' });
});

test('owner also sees the command', stepTimeout, async () => {
  await waitForFrames(pages.alice, { type: 'message', channel: `devices/${meterId}/commands` });

  const channels = messages(await framesOf(pages.alice)).map((frame) => frame.channel);
  assert.deepEqual(channels, [...Array.from({ length: telemetryCount }, () => `devices/${meterId}/telemetry`), `devices/${meterId}/commands`]);
});

test('other user receives no telemetry', stepTimeout, async () => {
  // Published after all the telemetry, so a leak would have reached bob's socket before this notice.
  assert.equal(server.running.publish('users/bob/notice', { text: 'known marker' }), 1);
  await waitForFrames(pages.bob, { type: 'message', channel: 'users/bob/notice' });

  const received = messages(await framesOf(pages.bob));
  assert.deepEqual(received.map((frame) => [frame.channel, frame.data]), [['users/bob/notice', { text: 'known marker' }]]);
  assert.deepEqual((await framesOf(pages.bob)).filter((frame) => frame.type === 'closed'), []);
});
