// Cross-site WebSocket hijacking in a real browser: the victim logs in to Portcullis in Chromium, then
// pages of another origin, served by a second loopback HTTPS server, open a WebSocket to the gateway.
// The page observes only close code 1006, so the verdict is read on the server side: the logged
// rejection code, no accepted handshake, and no live connection from that origin.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { Page } from 'playwright-core';

import { errorCatalogue, type ErrorCode } from '../../src/errors.ts';
import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { rememberSecret } from '../support/capture.ts';
import { launchChromium, type TestBrowser } from '../support/chromium.ts';
import { addUser, freePort, runServerCli, startTestServer, type TestServer } from '../support/server.ts';
import { socketWaitMs } from '../support/websocket.ts';

const password = 'a cross-site attack password';
const browserStep = { timeout: 60_000 };

/** The gateway's server; its own tests start nothing else on it. */
const main: { server: TestServer } = { server: undefined as unknown as TestServer };
let aliceElsewhere: ScriptedSession;
let mallory: ScriptedSession;

before(async () => {
  main.server = await startTestServer();
  await addUser(main.server, 'alice', password);
  await addUser(main.server, 'mallory', password);
  aliceElsewhere = await scriptedLogin(main.server, 'alice', password);
  mallory = await scriptedLogin(main.server, 'mallory', password);
});

after(async () => {
  await main.server?.close();
});

function logEventsSince(server: TestServer, mark: number): Array<Record<string, unknown>> {
  return server.logs.slice(mark).map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** How a WebSocket opened by a page ended, as far as the page can see. */
interface PageSocketOutcome {
  opened: boolean;
  closeCode: number;
}

/** Opens a WebSocket from `page`'s origin, as a script of that page, and waits for it to close. */
function openSocketFromPage(page: Page, url: string, protocols: string[]): Promise<PageSocketOutcome> {
  return page.evaluate(({ url, protocols, waitMs }) => new Promise<PageSocketOutcome>((resolve) => {
    let opened = false;
    const socket = new WebSocket(url, protocols);
    const timer = setTimeout(() => resolve({ opened, closeCode: -1 }), waitMs);
    socket.addEventListener('open', () => {
      opened = true;
      socket.close(1000);
    });
    socket.addEventListener('close', (event) => {
      clearTimeout(timer);
      resolve({ opened, closeCode: event.code });
    });
  }), { url, protocols, waitMs: socketWaitMs });
}

describe('attack 5: cross-site WebSocket hijacking from a page in Chromium', () => {
  let browser: TestBrowser;
  let victimPage: Page;
  let attackerServer: https.Server;
  let attackerPort: number;
  const socketUrl = () => `wss://localhost:${main.server.port}/ws`;

  before(async () => {
    const tlsDir = path.join(main.server.dataDir, 'tls');
    browser = await launchChromium([path.join(tlsDir, 'server.pem')]);

    // The server certificate of the development CA names both localhost and 127.0.0.1, so one
    // server on another port serves a same-site origin and a cross-site one.
    attackerPort = await freePort();
    attackerServer = https.createServer({ cert: fs.readFileSync(path.join(tlsDir, 'server.pem')), key: fs.readFileSync(path.join(tlsDir, 'server-key.pem')) }, (_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      response.end('<!DOCTYPE html><title>A page the victim visits</title>');
    });
    await new Promise<void>((resolve) => attackerServer.listen(attackerPort, '127.0.0.1', resolve));

    victimPage = await browser.context.newPage();
    await victimPage.goto(`${main.server.url}/`);
    await victimPage.locator('body[data-ready="true"]').waitFor();
    await victimPage.click('#login-link');
    await victimPage.fill('input[name="username"]', 'alice');
    await victimPage.fill('input[name="password"]', password);
    await victimPage.click('#login-submit');
    await victimPage.waitForURL(`${main.server.url}/`);

    const cookies = await browser.context.cookies(main.server.url);
    cookies.forEach((cookie) => rememberSecret(cookie.value));
    assert.ok(cookies.some((cookie) => cookie.name === '__Host-portcullis-session'), 'the browser login set no session cookie');
  }, browserStep);

  after(async () => {
    await browser?.close();
    if (attackerServer) {
      const closed = new Promise<void>((resolve) => attackerServer.close(() => resolve()));
      attackerServer.closeAllConnections();
      await closed;
    }
  });

  test('attack 5: control, victim page connects', browserStep, async () => {
    const csrfToken = await victimPage.evaluate(async () => ((await (await fetch('/session')).json()) as { csrf_token: string }).csrf_token);
    rememberSecret(csrfToken);

    const outcome = await openSocketFromPage(victimPage, socketUrl(), ['portcullis.v1', `portcullis.csrf.${csrfToken}`]);

    assert.deepEqual(outcome, { opened: true, closeCode: 1000 }, 'the victim\'s own page could not connect, so the cases below prove nothing');
  });

  // SameSite=Strict keeps the cookie off a handshake that a page of another site starts, so the
  // server receives a request without credentials. A page on the same site gets the cookie attached.
  const pages: Array<{ name: string; origin: () => string; code: ErrorCode; status: number }> = [
    { name: 'cross-site page', origin: () => `https://127.0.0.1:${attackerPort}`, code: 'token_missing', status: 401 },
    { name: 'same-site page on another port', origin: () => `https://localhost:${attackerPort}`, code: 'origin_not_allowed', status: 403 },
  ];
  const offers: Array<{ name: string; protocols: () => string[] }> = [
    { name: 'no CSRF token', protocols: () => ['portcullis.v1'] },
    { name: 'another user\'s CSRF token', protocols: () => ['portcullis.v1', `portcullis.csrf.${mallory.csrfToken}`] },
    { name: 'the CSRF token of another session', protocols: () => ['portcullis.v1', `portcullis.csrf.${aliceElsewhere.csrfToken}`] },
  ];

  for (const { name, origin, code, status } of pages) {
    test(`attack 5: ${name} with the victim's cookie`, browserStep, async () => {
      const attackerPage = await browser.context.newPage();
      const mark = main.server.logs.length;
      try {
        await attackerPage.goto(`${origin()}/`);
        for (const offer of offers) {
          const outcome = await openSocketFromPage(attackerPage, socketUrl(), offer.protocols());
          assert.deepEqual(outcome, { opened: false, closeCode: 1006 }, `${name} with ${offer.name} opened a socket`);
        }
      } finally {
        await attackerPage.close();
      }

      const rejections = logEventsSince(main.server, mark).filter((line) => line.event === 'handshake.rejected');
      assert.deepEqual(rejections.map((line) => [line.code, line.origin]), offers.map(() => [code, origin()]), `${name}: the server did not reject every handshake with ${code}`);
      // The page only gets close code 1006, so the status comes from the logged code and the catalogue.
      assert.deepEqual(rejections.map((line) => errorCatalogue[line.code as ErrorCode]?.status), offers.map(() => status), `${name}: not refused with ${status}`);
      const accepted = logEventsSince(main.server, mark).filter((line) => line.event === 'handshake.accepted');
      assert.deepEqual(accepted, [], `${name} got a connection accepted`);

      const listed = await runServerCli(main.server, ['sessions', 'list', '--json']);
      assert.equal(listed.code, 0, listed.stderr);
      const fromAttacker = (JSON.parse(listed.stdout) as Array<{ origin: string | null }>).filter((connection) => connection.origin === origin());
      assert.deepEqual(fromAttacker, [], `${name} has a live connection`);
    });
  }
});
