// The browser SDK as a page loads it: the bundle the server serves at /static/portcullis-client.js,
// in Debian's Chromium, over real TLS, with a session from the real login pages.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import type { Page } from 'playwright-core';

import { DeviceClient } from '../../src/client/device.ts';
import { scriptedLogin } from '../support/browser-login.ts';
import { launchChromium, type TestBrowser } from '../support/chromium.ts';
import { addDevice, addUser, runCli, startTestServer, temporaryDataDir, type TestServer } from '../support/server.ts';
import { clientOptions, opened, Recorder } from './recorder.ts';

const username = 'sdk-browser-user';
const password = 'sdk browser password';
// Registered before the login with the user as owner, so the session's scope covers its channels.
const ownedDeviceId = 'sdk-browser-thermometer';
const bundlePath = '/static/portcullis-client.js';
// A safety stop for each step; no assertion depends on how long anything took.
const stepTimeout = { timeout: 60_000 };

/** A message as the page's client reports it. */
interface PageMessage {
  channel: string;
  data: unknown;
  publisher: { clientId: string; sub: string };
  timestamp: number;
}

/** What the page's client reported, in order. */
type PageEvent =
  | { kind: 'state'; state: string; reason: string; closeCode?: number; status?: number; retryInMs?: number; retryHinted?: boolean; welcome?: { connectionId: string; sub: string; clientId: string; scope: string } }
  | { kind: 'message'; message: PageMessage }
  | { kind: 'subscription_message'; subscription: string; message: PageMessage }
  | { kind: 'subscribed'; channel: string; restored: boolean }
  | { kind: 'subscription_ended'; channel: string; code: string }
  | { kind: 'refreshed'; expiresAt: number };

/** The globals the page script below sets. */
interface PageGlobals {
  portcullisEvents: PageEvent[];
  portcullisClient: { connect(): void; refresh(): Promise<void>; close(): void; readonly subscriptions: string[] };
  /** Subscribes with a callback that records `subscription_message` events. Resolves to `subscribed` or the rejection's code. */
  portcullisSubscribe(channel: string): Promise<string>;
}

let server: TestServer;
let ownedDeviceSecret: string | undefined;
let browser: TestBrowser;
let page: Page;

before(async () => {
  server = await startTestServer();
  await addUser(server, username, password);
  ({ client_secret: ownedDeviceSecret } = await addDevice(server, ownedDeviceId, ['--owner', username]));
  browser = await launchChromium([path.join(server.dataDir, 'tls/server.pem')]);
  const session = await scriptedLogin(server, username, password);
  await browser.context.addCookies([{ name: '__Host-portcullis-session', value: session.sessionToken, url: server.url, secure: true, httpOnly: true, sameSite: 'Strict' }]);
  page = await browser.context.newPage();
  await page.goto(`${server.url}/`);
}, stepTimeout);

after(async () => {
  await browser?.close();
  await server?.close();
});

function events(): Promise<PageEvent[]> {
  return page.evaluate(() => (window as unknown as PageGlobals).portcullisEvents);
}

/**
 * Waits until the page's client has reported `count` events whose `field` equals `value`. The
 * predicate is a function, not a string: the page's CSP forbids the eval a string predicate needs.
 */
async function waitForEvent(field: 'kind' | 'state' | 'channel', value: string, target: Page = page, count = 1): Promise<void> {
  await target.waitForFunction(
    (wanted) => ((window as unknown as Partial<PageGlobals>).portcullisEvents ?? [])
      .filter((event) => (event as Record<string, unknown>)[wanted.field] === wanted.value).length >= wanted.count,
    { field, value, count },
    { timeout: 30_000 },
  );
}

function logLines(): Array<Record<string, unknown>> {
  return server.logs.map((line) => JSON.parse(line) as Record<string, unknown>);
}

test('server serves the bundle', stepTimeout, async () => {
  const response = await server.fetch(`${server.url}${bundlePath}`);
  const body = await response.text();

  assert.equal(response.status, 200, `the server does not serve ${bundlePath} yet`);
  assert.match(response.headers.get('content-type') ?? '', /^(text|application)\/javascript/);
  assert.match(body, /export\s*\{[^}]*createBrowserClient/);
  assert.doesNotMatch(body, /from\s*["']node:|require\(/);
});

/**
 * Returns the page script that loads the bundle and starts a client with `options` (JSON), recording its
 * callbacks in `window.portcullisEvents`. It is a string: tsx would otherwise add its `__name`
 * helper to functions sent to the page, which the page does not have.
 */
function startClientScript(options: Record<string, unknown> = {}): string {
  return `(async () => {
  const { createBrowserClient } = await import(${JSON.stringify(bundlePath)});
  const events = [];
  window.portcullisEvents = events;
  window.portcullisClient = createBrowserClient({
    ...${JSON.stringify(options)},
    onStateChange: (change) => events.push({ kind: 'state', ...change }),
    onMessage: (message) => events.push({ kind: 'message', message }),
    onSubscribed: (event) => events.push({ kind: 'subscribed', ...event }),
    onSubscriptionEnded: (event) => events.push({ kind: 'subscription_ended', ...event }),
    onTokenRefreshed: (expiresAt) => events.push({ kind: 'refreshed', expiresAt }),
  });
  window.portcullisSubscribe = (channel) => window.portcullisClient
    .subscribe(channel, (message) => events.push({ kind: 'subscription_message', subscription: channel, message }))
    .then(() => 'subscribed', (error) => error.code);
  window.portcullisClient.connect();
})()`;
}

test('connects and receives welcome', stepTimeout, async () => {
  await page.evaluate(startClientScript());
  await waitForEvent('state', 'open');

  const states = (await events()).filter((event) => event.kind === 'state');
  assert.deepEqual(states.map((event) => [event.state, event.reason]), [['connecting', 'started'], ['open', 'welcome']]);
  const { welcome } = states[1];
  assert.equal(welcome?.sub, username);
  assert.equal(welcome?.clientId, 'portcullis-gateway');
  const accepted = logLines().filter((line) => line.event === 'handshake.accepted' && line.connection_id === welcome?.connectionId);
  assert.deepEqual(accepted.map((line) => [line.kind, line.sub]), [['browser', username]]);
});

test('welcome lists the session scope', stepTimeout, async () => {
  const open = (await events()).find((event) => event.kind === 'state' && event.state === 'open');
  const scope = open?.kind === 'state' ? open.welcome?.scope.split(' ') ?? [] : [];

  assert.ok(scope.includes('subscribe:users/{sub}/#'), `scope ${JSON.stringify(scope)}`);
  assert.ok(scope.includes(`subscribe:devices/${ownedDeviceId}/#`), `scope ${JSON.stringify(scope)}`);
});

test('owned device telemetry reaches page', stepTimeout, async () => {
  const filter = `devices/${ownedDeviceId}/#`;
  const outcome = await page.evaluate((channel) => (window as unknown as PageGlobals).portcullisSubscribe(channel), filter);
  assert.equal(outcome, 'subscribed');

  // The device publishes through the device SDK with its own credentials, not as the operator.
  const telemetry = `devices/${ownedDeviceId}/telemetry`;
  const recorder = new Recorder();
  const deviceClient = new DeviceClient(clientOptions(server, ownedDeviceId, recorder, { credentials: { clientSecret: ownedDeviceSecret! } }));
  try {
    deviceClient.connect();
    await opened(recorder);
    await deviceClient.publish(telemetry, { celsius: 21.5 });
  } finally {
    await deviceClient.close();
  }
  await waitForEvent('kind', 'subscription_message');

  const all = await events();
  const subscribed = all.filter((event) => event.kind === 'subscribed');
  assert.deepEqual(subscribed, [{ kind: 'subscribed', channel: filter, restored: false }]);
  const messages = all.flatMap((event) => (event.kind === 'message' ? [event.message] : []));
  assert.equal(messages.length, 1);
  assert.equal(messages[0].channel, telemetry);
  assert.deepEqual(messages[0].data, { celsius: 21.5 });
  assert.deepEqual(messages[0].publisher, { clientId: ownedDeviceId, sub: ownedDeviceId });
  const delivered = all.flatMap((event) => (event.kind === 'subscription_message' ? [[event.subscription, event.message.channel]] : []));
  assert.deepEqual(delivered, [[filter, telemetry]]);
});

test('unowned device is forbidden', stepTimeout, async () => {
  const outcome = await page.evaluate(() => (window as unknown as PageGlobals).portcullisSubscribe('devices/someone-elses-device/#'));
  const subscriptions = await page.evaluate(() => (window as unknown as PageGlobals).portcullisClient.subscriptions);

  assert.equal(outcome, 'forbidden');
  assert.deepEqual(subscriptions, [`devices/${ownedDeviceId}/#`]);
  const states = (await events()).filter((event) => event.kind === 'state');
  assert.deepEqual(states.map((event) => event.state), ['connecting', 'open'], 'the rejection ended the connection');
});

test('session refresh confirmed on socket', stepTimeout, async () => {
  await page.evaluate(() => (window as unknown as PageGlobals).portcullisClient.refresh());
  await waitForEvent('kind', 'refreshed');

  const all = await events();
  assert.equal(all.filter((event) => event.kind === 'refreshed').length, 1);
  assert.deepEqual(all.filter((event) => event.kind === 'state').map((event) => event.state), ['connecting', 'open']);
  assert.equal(logLines().filter((line) => line.event === 'session.refreshed' && line.sub === username).length, 1);
});

test('logout stops with 4403', stepTimeout, async () => {
  const status = await page.evaluate(async () => {
    const session = await (await fetch('/session')).json() as { csrf_token: string };
    const response = await fetch('/logout', { method: 'POST', headers: { 'X-CSRF-Token': session.csrf_token } });
    return response.status;
  });
  await waitForEvent('state', 'stopped');

  assert.equal(status, 200);
  const last = (await events()).filter((event) => event.kind === 'state').at(-1);
  assert.deepEqual(last, { kind: 'state', state: 'stopped', reason: 'token_revoked', closeCode: 4403 });
});

test('logged out reconnect is unauthenticated', stepTimeout, async () => {
  const logStart = server.logs.length;
  await page.evaluate(() => (window as unknown as PageGlobals).portcullisClient.connect());
  await waitForEvent('state', 'unauthenticated');

  const last = (await events()).filter((event) => event.kind === 'state').slice(-2);
  assert.deepEqual(last, [
    { kind: 'state', state: 'connecting', reason: 'started' },
    { kind: 'state', state: 'unauthenticated', reason: 'login_required', status: 401 },
  ]);
  // /session returned 401, so the client did not try a handshake.
  assert.equal(server.logs.slice(logStart).filter((line) => line.includes('"event":"handshake.')).length, 0);
});

test('refreshes before expiry on its own', stepTimeout, async () => {
  // The same TLS files as the first server, because the browser trusts only that server's key.
  const dataDir = temporaryDataDir();
  fs.copyFileSync(path.join(server.dataDir, 'ca.pem'), path.join(dataDir, 'ca.pem'));
  fs.cpSync(path.join(server.dataDir, 'tls'), path.join(dataDir, 'tls'), { recursive: true });
  const shortLived = await startTestServer({ dataDir, accessTokenTtlSeconds: 30 });
  const otherPage = await browser.context.newPage();
  try {
    await addUser(shortLived, username, password);
    const session = await scriptedLogin(shortLived, username, password);
    await browser.context.addCookies([{ name: '__Host-portcullis-session', value: session.sessionToken, url: shortLived.url, secure: true, httpOnly: true, sameSite: 'Strict' }]);
    await otherPage.goto(`${shortLived.url}/`);

    // With 30 s tokens and a 27 s margin, the refresh is due 3 s after each token arrives.
    await otherPage.evaluate(startClientScript({ refreshMarginSeconds: 27 }));
    await waitForEvent('kind', 'refreshed', otherPage, 2);

    const all = await otherPage.evaluate(() => (window as unknown as PageGlobals).portcullisEvents);
    assert.deepEqual(all.filter((event) => event.kind === 'state').map((event) => event.state), ['connecting', 'open']);
    const refreshes = shortLived.logs.filter((line) => line.includes('"event":"session.refreshed"'));
    assert.ok(refreshes.length >= 2, `the server logged ${refreshes.length} session refreshes`);
  } finally {
    await otherPage.close();
    await shortLived.close();
  }
});

test('restart drops subscription no longer allowed', stepTimeout, async () => {
  const lampId = 'sdk-browser-lamp';
  const lampFilter = `devices/${lampId}/#`;
  const inbox = `users/${username}/inbox`;
  const dataDir = temporaryDataDir();
  fs.copyFileSync(path.join(server.dataDir, 'ca.pem'), path.join(dataDir, 'ca.pem'));
  fs.cpSync(path.join(server.dataDir, 'tls'), path.join(dataDir, 'tls'), { recursive: true });
  const first = await startTestServer({ dataDir });
  let second: TestServer | undefined;
  const otherPage = await browser.context.newPage();
  try {
    await addUser(first, username, password);
    await addDevice(first, lampId, ['--owner', username]);
    const session = await scriptedLogin(first, username, password);
    await browser.context.addCookies([{ name: '__Host-portcullis-session', value: session.sessionToken, url: first.url, secure: true, httpOnly: true, sameSite: 'Strict' }]);
    await otherPage.goto(`${first.url}/`);
    await otherPage.evaluate(startClientScript());
    await waitForEvent('state', 'open', otherPage);
    const outcomes = await otherPage.evaluate(async (channels) => Promise.all(channels.map((channel) => (window as unknown as PageGlobals).portcullisSubscribe(channel))), [lampFilter, `users/${username}/#`]);
    assert.deepEqual(outcomes, ['subscribed', 'subscribed']);

    // Giving the lamp away takes its scope out of the next session token.
    const removed = await runCli(dataDir, ['devices', 'remove', lampId]);
    assert.equal(removed.code, 0, removed.stderr);
    await otherPage.evaluate(() => (window as unknown as PageGlobals).portcullisClient.refresh());
    await first.close();
    second = await startTestServer({ dataDir, port: first.port });
    await waitForEvent('state', 'open', otherPage, 2);
    await waitForEvent('kind', 'subscription_ended', otherPage);
    await waitForEvent('channel', `users/${username}/#`, otherPage, 2);
    assert.equal(second.running.publish(inbox, { text: 'after the restart' }), 1);
    await waitForEvent('kind', 'message', otherPage);

    const all = await otherPage.evaluate(() => (window as unknown as PageGlobals).portcullisEvents);
    // A server that narrows live subscriptions at the refresh ends it then. Otherwise the server rejects its restore.
    assert.deepEqual(all.filter((event) => event.kind === 'subscription_ended'), [{ kind: 'subscription_ended', channel: lampFilter, code: 'forbidden' }]);
    assert.deepEqual(all.filter((event) => event.kind === 'subscribed' && event.restored).map((event) => event.kind === 'subscribed' && event.channel), [`users/${username}/#`]);
    const messages = all.flatMap((event) => (event.kind === 'message' ? [[event.message.channel, event.message.data]] : []));
    assert.deepEqual(messages, [[inbox, { text: 'after the restart' }]]);
    const subscriptions = await otherPage.evaluate(() => (window as unknown as PageGlobals).portcullisClient.subscriptions);
    assert.deepEqual(subscriptions, [`users/${username}/#`]);
  } finally {
    await otherPage.close();
    await second?.close();
    await first.close();
  }
});

test('restart waits the reconnect hint', stepTimeout, async () => {
  const dataDir = temporaryDataDir();
  fs.copyFileSync(path.join(server.dataDir, 'ca.pem'), path.join(dataDir, 'ca.pem'));
  fs.cpSync(path.join(server.dataDir, 'tls'), path.join(dataDir, 'tls'), { recursive: true });
  // Short, so that the hinted wait is short; no assertion depends on how long anything took.
  const first = await startTestServer({ dataDir, drainWindowMs: 300 });
  let second: TestServer | undefined;
  const otherPage = await browser.context.newPage();
  // Chromium reports the frames it received, so the test reads the hint the page got without an SDK hook.
  const hints: number[] = [];
  otherPage.on('websocket', (socket) => socket.on('framereceived', ({ payload }) => {
    const frame = JSON.parse(payload.toString()) as { type: string; after_ms?: number };
    if (frame.type === 'reconnect') {
      hints.push(frame.after_ms!);
    }
  }));
  try {
    await addUser(first, username, password);
    const session = await scriptedLogin(first, username, password);
    await browser.context.addCookies([{ name: '__Host-portcullis-session', value: session.sessionToken, url: first.url, secure: true, httpOnly: true, sameSite: 'Strict' }]);
    await otherPage.goto(`${first.url}/`);
    await otherPage.evaluate(startClientScript());
    await waitForEvent('state', 'open', otherPage);

    await first.close();
    second = await startTestServer({ dataDir, port: first.port });
    await waitForEvent('state', 'open', otherPage, 2);

    const states = (await otherPage.evaluate(() => (window as unknown as PageGlobals).portcullisEvents)).filter((event) => event.kind === 'state');
    assert.equal(hints.length, 1);
    const retry = states.find((event) => event.state === 'reconnecting');
    assert.deepEqual(retry, { kind: 'state', state: 'reconnecting', reason: 'going_away', closeCode: 1001, retryInMs: hints[0], retryHinted: true });
    assert.equal(states.at(-1)?.state, 'open');
  } finally {
    await otherPage.close();
    await second?.close();
    await first.close();
  }
});
