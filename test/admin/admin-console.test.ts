import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import type { Page } from 'playwright-core';

import { rememberSecret } from '../support/capture.ts';
import { launchChromium, type TestBrowser } from '../support/chromium.ts';
import { addDevice, addUser, deviceToken, repositoryRoot, runServerCli, startTestServer, type TestServer } from '../support/server.ts';
import { openDeviceSocket, type GatewaySocket } from '../support/websocket.ts';
import { rawHandshake } from '../support/raw-handshake.ts';

const adminName = 'ada';
const adminPassword = 'an admin console test password';
const userName = 'uma';
const userPassword = 'a plain console test password';
const deviceId = 'console-sensor';
// Written outside the tracked tree; docs/images/admin-console.png is a copy taken from one run.
const screenshotPath = path.join(repositoryRoot, 'test-results/admin-console.png');
// A safety stop for steps without a timeout of their own.
const stepTimeout = { timeout: 60_000 };

let server: TestServer;
let browser: TestBrowser;
let page: Page;
let deviceSocket: GatewaySocket;

before(async () => {
  server = await startTestServer();
  rememberSecret(adminPassword);
  const added = await runServerCli(server, ['users', 'add', adminName, '--password-stdin', '--admin'], `${adminPassword}\n`);
  assert.equal(added.code, 0, added.stderr);
  await addUser(server, userName, userPassword);
  const credentials = await addDevice(server, deviceId);
  deviceSocket = await openDeviceSocket(server, { clientId: deviceId, accessToken: await deviceToken(server, credentials) });
  // One rejected handshake, so the console has a rejection to show.
  const rejected = await rawHandshake({ port: server.port, ca: server.caPem, headers: { Authorization: 'Bearer not-a-token', 'X-Client-Id': deviceId, 'Sec-WebSocket-Protocol': 'portcullis.v1' } });
  assert.equal(rejected.status, 401);
  browser = await launchChromium([path.join(server.dataDir, 'tls/server.pem')]);
  page = await browser.context.newPage();
}, stepTimeout);

after(async () => {
  await deviceSocket?.close();
  await browser?.close();
  await server?.close();
});

/** Logs in through the demo page, the real login form and the redirects back to `/`. */
async function logIn(username: string, password: string): Promise<void> {
  await page.goto(`${server.url}/`);
  await page.locator('body[data-ready="true"]').waitFor();
  await page.click('#login-link');
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', password);
  await page.click('#login-submit');
  await page.waitForURL(`${server.url}/`);
  await page.locator('body[data-ready="true"] #logout').waitFor({ state: 'visible' });
}

async function logOut(): Promise<void> {
  await page.goto(`${server.url}/`);
  await page.locator('body[data-ready="true"] #logout').waitFor({ state: 'visible' });
  await page.click('#logout');
  await page.locator('#login-link').waitFor({ state: 'visible' });
}

test('console redirects to login without a session', stepTimeout, async () => {
  const response = await page.goto(`${server.url}/admin`);

  assert.equal(response?.status(), 200);
  assert.match(new URL(page.url()).pathname, /^\/interaction\//);
  await page.locator('input[name="username"]').waitFor();
});

test('admin revokes a live device connection', stepTimeout, async () => {
  await logIn(adminName, adminPassword);
  const response = await page.goto(`${server.url}/admin`);
  assert.equal(response?.status(), 200);
  assert.match((await response!.allHeaders())['content-security-policy'] ?? '', /script-src 'self'/);
  await page.locator('body[data-ready="true"]').waitFor();

  const row = page.locator(`tr[data-connection-id="${deviceSocket.welcome.connection_id}"]`);
  await row.waitFor();
  assert.equal(await page.locator('#admin-user').textContent(), adminName);
  assert.match(await row.textContent() ?? '', new RegExp(deviceId));
  await page.locator('#chart svg circle').first().waitFor({ state: 'attached' });
  // The counts arrive over the page's own WebSocket on admin/stats.
  await page.locator('#live-status', { hasText: 'live' }).waitFor();
  await page.locator('#live-counts', { hasText: '1 device' }).waitFor();
  // The audit trail stores events in batches, so the rejection may appear at a later refresh.
  await page.locator('#rejections tbody tr', { hasText: 'token_invalid' }).waitFor();
  fs.mkdirSync(path.dirname(screenshotPath), { recursive: true });
  await page.screenshot({ path: screenshotPath, fullPage: true });

  await row.locator('button.revoke').click();
  const closed = await deviceSocket.waitForClose();
  await row.waitFor({ state: 'detached' });

  assert.equal(closed.code, 4403);
  assert.equal(await page.locator('#admin-error').isHidden(), true);
});

test('non-admin gets 403 on the console', stepTimeout, async () => {
  await logOut();
  await logIn(userName, userPassword);

  const response = await page.goto(`${server.url}/admin`);

  assert.equal(response?.status(), 403);
  await page.locator('#admin-forbidden').waitFor();
  assert.equal(await page.locator('table#connections').count(), 0);
});
