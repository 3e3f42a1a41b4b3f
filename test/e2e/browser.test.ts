import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, test } from 'node:test';

import type { Page } from 'playwright-core';

import { DeviceClient, type StateChange } from '../../src/client/device.ts';
import { launchChromium, type TestBrowser } from '../support/chromium.ts';
import { addDevice, addUser, freePort, repositoryRoot, startTestServer, type TestServer } from '../support/server.ts';

const username = 'alice';
const password = 'a browser test password';
// Owned by the user from before the login, so the session's scope lets the page watch it.
const deviceId = 'greenhouse-sensor';
const sessionCookieName = '__Host-portcullis-session';
// Written outside the tracked tree; docs/images/demo.png is a copy taken from one run.
const screenshotPath = path.join(repositoryRoot, 'test-results/demo.png');
// A safety stop for steps without a timeout of their own, such as waiting for a socket to close in the page.
const stepTimeout = { timeout: 60_000 };

/** How a WebSocket opened inside a page ended. */
interface SocketOutcome {
  opened: boolean;
  closeCode: number;
}

let server: TestServer;
let browser: TestBrowser;
let page: Page;
let otherOrigin: https.Server | undefined;
let deviceSecret: string;

before(async () => {
  server = await startTestServer();
  await addUser(server, username, password);
  ({ client_secret: deviceSecret } = await addDevice(server, deviceId, ['--owner', username]));
  browser = await launchChromium([path.join(server.dataDir, 'tls/server.pem')]);
  page = await browser.context.newPage();
}, stepTimeout);

after(async () => {
  await browser?.close();
  if (otherOrigin) {
    await new Promise<void>((resolve) => otherOrigin!.close(() => resolve()));
  }
  await server?.close();
});

/** Parsed log lines written since `from` (an index into `server.logs`). */
function logEventsSince(from: number): Array<Record<string, unknown>> {
  return server.logs.slice(from).map((line) => JSON.parse(line) as Record<string, unknown>);
}

function handshakeRejectionsSince(from: number): Array<Record<string, unknown>> {
  return logEventsSince(from).filter((line) => line.event === 'handshake.rejected');
}

async function sessionCookie(): Promise<{ name: string; value: string; httpOnly: boolean; secure: boolean; sameSite: string } | undefined> {
  return (await browser.context.cookies(server.url)).find((cookie) => cookie.name === sessionCookieName);
}

/** Opens a WebSocket from the current page's origin and waits for it to close. */
function openSocketInPage(url: string, protocols: string[]): Promise<SocketOutcome> {
  return page.evaluate(({ url, protocols }) => new Promise<SocketOutcome>((resolve) => {
    let opened = false;
    const socket = new WebSocket(url, protocols);
    socket.addEventListener('open', () => {
      opened = true;
      socket.close(1000);
    });
    socket.addEventListener('close', (event) => resolve({ opened, closeCode: event.code }));
  }), { url, protocols });
}

/** Starts a plain HTTPS server on another loopback port, with the gateway's certificate, serving one page. */
async function serveOtherOriginPage(html: string): Promise<string> {
  const port = await freePort();
  otherOrigin = https.createServer({
    cert: fs.readFileSync(path.join(server.dataDir, 'tls/server.pem')),
    key: fs.readFileSync(path.join(server.dataDir, 'tls/server-key.pem')),
  }, (_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    response.end(html);
  });
  await new Promise<void>((resolve) => otherOrigin!.listen(port, '127.0.0.1', resolve));
  return `https://localhost:${port}`;
}

test('the demo page carries the security headers', stepTimeout, async () => {
  const response = await page.goto(`${server.url}/`);

  assert.equal(response?.status(), 200);
  const headers = await response!.allHeaders();
  assert.match(headers['content-security-policy'] ?? '', /default-src 'none'/);
  assert.match(headers['content-security-policy'] ?? '', /script-src 'self'/);
  assert.match(headers['strict-transport-security'] ?? '', /max-age=\d+/);
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'no-referrer');
});

test('a user logs in through the real pages', stepTimeout, async () => {
  await page.goto(`${server.url}/`);
  await page.locator('body[data-ready="true"]').waitFor();

  await page.click('#login-link');
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', password);
  await page.click('#login-submit');
  await page.waitForURL(`${server.url}/`);
  await page.locator('body[data-ready="true"] #connect').waitFor({ state: 'visible' });

  assert.equal(await page.locator('#user').textContent(), username);
  const cookie = await sessionCookie();
  assert.ok(cookie, 'the login set the session cookie');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.secure, true);
  assert.equal(cookie.sameSite, 'Strict');
});

test('page scripts cannot read the session cookie', stepTimeout, async () => {
  const cookie = await sessionCookie();
  const visible = await page.evaluate(() => document.cookie);

  assert.ok(cookie);
  assert.ok(!visible.includes(sessionCookieName), 'document.cookie names the session cookie');
  assert.ok(!visible.includes(cookie.value), 'document.cookie contains the session token');
});

/** Connects as the device with the device SDK, publishes one message and disconnects. */
async function publishAsDevice(channel: string, data: unknown): Promise<void> {
  let opened!: () => void;
  let failed!: (error: Error) => void;
  const open = new Promise<void>((resolve, reject) => {
    opened = resolve;
    failed = reject;
  });
  const client = new DeviceClient({
    url: `wss://localhost:${server.port}/ws`,
    issuer: server.url,
    clientId: deviceId,
    credentials: { clientSecret: deviceSecret },
    ca: server.caPem,
    onStateChange: (change: StateChange) => {
      if (change.state === 'open') {
        opened();
      } else if (change.state === 'stopped') {
        failed(new Error(`the device client stopped: ${change.reason}`));
      }
    },
  });
  try {
    client.connect();
    await open;
    await client.publish(channel, data);
  } finally {
    await client.close();
  }
}

test('the demo page shows device messages', stepTimeout, async () => {
  const logStart = server.logs.length;
  const filter = `devices/${deviceId}/#`;
  const telemetry = `devices/${deviceId}/telemetry`;

  await page.click('#connect');
  await page.waitForFunction(() => document.getElementById('status')?.textContent === 'open');

  // Only a request with the session cookie takes the browser path, so the SameSite=Strict cookie was sent on the upgrade.
  const accepted = logEventsSince(logStart).filter((line) => line.event === 'handshake.accepted');
  assert.deepEqual(accepted.map((line) => [line.kind, line.sub]), [['browser', username]]);
  const scope = await page.locator('#scope li').allTextContents();
  assert.ok(scope.includes('subscribe:users/{sub}/#'), `scope ${JSON.stringify(scope)}`);
  assert.ok(scope.includes(`subscribe:${filter}`), `scope ${JSON.stringify(scope)}`);
  // The first subscribe scope, with {sub} replaced.
  assert.equal(await page.inputValue('#channel'), `users/${username}/#`);

  await page.fill('#channel', filter);
  await page.click('#subscribe');
  await page.locator('#subscriptions li', { hasText: filter }).waitFor();
  await publishAsDevice(telemetry, { celsius: 21.5, humidity: 0.61 });
  await page.locator('#messages li').first().waitFor();

  const shown = await page.locator('#messages li').allTextContents();
  assert.equal(shown.length, 1);
  assert.match(shown[0], new RegExp(`${telemetry} from ${deviceId}`));
  assert.ok(shown[0].includes('{"celsius":21.5,"humidity":0.61}'), shown[0]);
  assert.equal(await page.locator('#channel-error').isHidden(), true);

  fs.mkdirSync(path.dirname(screenshotPath), { recursive: true });
  await page.screenshot({ path: screenshotPath, fullPage: true });
});

test('the demo page shows a forbidden subscription', stepTimeout, async () => {
  await page.fill('#channel', 'devices/someone-elses-device/#');
  await page.click('#subscribe');
  await page.locator('#channel-error').waitFor({ state: 'visible' });

  assert.match(await page.locator('#channel-error').textContent() ?? '', /failed with forbidden/);
  assert.deepEqual(await page.locator('#subscriptions li code').allTextContents(), [`devices/${deviceId}/#`]);
  assert.equal(await page.locator('#status').textContent(), 'open');
});

test('another origin on the same site is rejected', stepTimeout, async () => {
  const csrfToken = await page.evaluate(async () => ((await (await fetch('/session')).json()) as { csrf_token: string }).csrf_token);
  const gatewaySocketUrl = `wss://localhost:${server.port}/ws`;
  const origin = await serveOtherOriginPage(`<!DOCTYPE html>
<title>Another origin</title>
<script>
window.socketOutcome = new Promise((resolve) => {
  let opened = false;
  const socket = new WebSocket(${JSON.stringify(gatewaySocketUrl)}, ['portcullis.v1', ${JSON.stringify(`portcullis.csrf.${csrfToken}`)}]);
  socket.addEventListener('open', () => { opened = true; });
  socket.addEventListener('close', (event) => resolve({ opened, closeCode: event.code }));
});
</script>`);
  assert.ok(await sessionCookie(), 'the session cookie is still in the browser');
  const logStart = server.logs.length;

  const otherPage = await browser.context.newPage();
  try {
    await otherPage.goto(`${origin}/`);
    const outcome = await otherPage.evaluate(() => (window as unknown as { socketOutcome: Promise<SocketOutcome> }).socketOutcome);

    assert.deepEqual(outcome, { opened: false, closeCode: 1006 });
  } finally {
    await otherPage.close();
  }

  // origin_not_allowed is only reached on the browser path, so the browser did send the cookie.
  const rejections = handshakeRejectionsSince(logStart);
  assert.deepEqual(rejections.map((line) => [line.code, line.origin]), [['origin_not_allowed', origin]]);
  assert.equal(logEventsSince(logStart).filter((line) => line.event === 'handshake.accepted').length, 0);
});

test('after logout even the old cookie is rejected', stepTimeout, async () => {
  const oldCookie = await sessionCookie();
  const csrfToken = await page.evaluate(async () => ((await (await fetch('/session')).json()) as { csrf_token: string }).csrf_token);
  const gatewaySocketUrl = `wss://localhost:${server.port}/ws`;
  const protocols = ['portcullis.v1', `portcullis.csrf.${csrfToken}`];
  assert.ok(oldCookie);

  await page.click('#logout');
  await page.locator('#login-link').waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('stopped'));
  assert.equal(await page.locator('#status').textContent(), 'stopped (closed)');
  assert.equal(await sessionCookie(), undefined);

  let logStart = server.logs.length;
  assert.deepEqual(await openSocketInPage(gatewaySocketUrl, protocols), { opened: false, closeCode: 1006 });
  assert.deepEqual(handshakeRejectionsSince(logStart).map((line) => line.code), ['token_missing']);

  // A copied cookie must not outlive the logout: the grant is revoked on the server.
  await browser.context.addCookies([{ name: oldCookie.name, value: oldCookie.value, url: server.url, secure: true, httpOnly: true, sameSite: 'Strict' }]);
  logStart = server.logs.length;
  assert.deepEqual(await openSocketInPage(gatewaySocketUrl, protocols), { opened: false, closeCode: 1006 });
  assert.deepEqual(handshakeRejectionsSince(logStart).map((line) => line.code), ['token_revoked']);
});
