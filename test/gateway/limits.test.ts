// Handshake rate limits against a real server over TLS: per client address (with and without a
// trusted proxy) and per device client id, plus the address key that the limiter counts under.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';

import type { ErrorCode } from '../../src/errors.ts';
import { addressRateLimitKey, clientAddress } from '../../src/gateway/handshake-limits.ts';
import { scriptedLogin } from '../support/browser-login.ts';
import { rawHandshake, type RawResponse } from '../support/raw-handshake.ts';
import { addDevice, addUser, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { browserHeaders, deviceHeaders, type DeviceCredentials } from '../support/websocket.ts';

function handshake(server: TestServer, headers: Record<string, string | string[] | null> = {}): Promise<RawResponse> {
  return rawHandshake({ port: server.port, ca: server.caPem, headers });
}

async function registerDevice(server: TestServer, clientId: string): Promise<DeviceCredentials> {
  return { clientId, accessToken: await deviceToken(server, await addDevice(server, clientId)) };
}

/** Asserts a rejection with its status, error code in body and header, and no upgrade. */
function assertRejected(response: RawResponse, status: number, code: ErrorCode): void {
  assert.equal(response.status, status);
  assert.equal(response.json?.error, code);
  assert.equal(response.headers['x-portcullis-error'], code);
  assert.equal(response.headers['sec-websocket-accept'], undefined);
}

/** Asserts 429 `rate_limited` with a `Retry-After` of whole seconds within the one-minute window. */
function assertRateLimited(response: RawResponse): void {
  assertRejected(response, 429, 'rate_limited');
  const retryAfter = response.headers['retry-after'];
  assert.match(retryAfter ?? '', /^\d+$/, `Retry-After is ${retryAfter}`);
  assert.ok(Number(retryAfter) >= 1, `Retry-After is ${retryAfter}`);
  assert.ok(Number(retryAfter) <= 60, `Retry-After is ${retryAfter}`);
}

describe('handshakes per address', () => {
  let server: TestServer;
  let device: DeviceCredentials;

  before(async () => {
    server = await startTestServer({ handshakesPerIpPerMinute: 3 });
    device = await registerDevice(server, 'address-limited-device');
  });

  after(async () => {
    await server.close();
  });

  test('fourth handshake gets 429 before token checks', async () => {
    // X-Forwarded-For from a peer that is not a trusted proxy must not open a new budget.
    for (const forwarded of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) {
      assertRejected(await handshake(server, { 'X-Forwarded-For': forwarded }), 401, 'token_missing');
    }

    // Without credentials the handshake would get 401, so 429 shows the limit runs first.
    assertRateLimited(await handshake(server));
    assertRateLimited(await handshake(server, deviceHeaders(device)));
    assert.ok(server.logs.some((line) => line.includes('"handshake.rejected"') && line.includes('"rate_limited"')));
  });

  test('HTTP requests are not counted', async () => {
    // Uses up the address budget here, so the test does not depend on the one before it.
    for (let attempt = 0; attempt < 4; attempt += 1) {
      await handshake(server);
    }
    assertRateLimited(await handshake(server));

    const response = await server.fetch(`${server.url}/session`);
    await response.body?.cancel();
    assert.equal(response.status, 401);
  });
});

describe('handshakes behind a trusted proxy', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ handshakesPerIpPerMinute: 2, trustedProxies: ['127.0.0.1'] });
  });

  after(async () => {
    await server.close();
  });

  test('rightmost X-Forwarded-For entry is counted', async () => {
    // The leftmost entry is written by the client and stays the same, so only the rightmost,
    // written by the proxy, separates the budgets.
    const first = { 'X-Forwarded-For': '198.51.100.7, 192.0.2.10' };
    const second = { 'X-Forwarded-For': '198.51.100.7, 192.0.2.20' };

    assertRejected(await handshake(server, first), 401, 'token_missing');
    assertRejected(await handshake(server, first), 401, 'token_missing');
    assertRateLimited(await handshake(server, first));

    assertRejected(await handshake(server, second), 401, 'token_missing');
  });

  test('repeated header lines count as one list', async () => {
    const headers = { 'X-Forwarded-For': ['192.0.2.30', '198.51.100.8, 192.0.2.31'] };

    assertRejected(await handshake(server, headers), 401, 'token_missing');
    assertRejected(await handshake(server, { 'X-Forwarded-For': '192.0.2.31' }), 401, 'token_missing');
    assertRateLimited(await handshake(server, headers));
  });

  test('missing header counts the proxy', async () => {
    assertRejected(await handshake(server), 401, 'token_missing');
    assertRejected(await handshake(server, { 'X-Forwarded-For': 'unknown' }), 401, 'token_missing');
    assertRateLimited(await handshake(server));
  });
});

describe('handshakes per client id', () => {
  const password = 'a long enough password';
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ handshakesPerClientPerMinute: 2 });
  });

  after(async () => {
    await server.close();
  });

  test('third device handshake gets 429', async () => {
    const device = await registerDevice(server, 'client-limited-device');

    assert.equal((await handshake(server, deviceHeaders(device))).status, 101);
    assert.equal((await handshake(server, deviceHeaders(device))).status, 101);
    assertRateLimited(await handshake(server, deviceHeaders(device)));

    const other = await registerDevice(server, 'client-limited-neighbour');
    assert.equal((await handshake(server, deviceHeaders(other))).status, 101, 'another client id keeps its budget');
  });

  test('unauthenticated attempts spend no budget', async () => {
    const device = await registerDevice(server, 'client-limited-target');
    const forged = { ...deviceHeaders(device), Authorization: 'Bearer not-a-token' };
    for (let attempt = 0; attempt < 3; attempt += 1) {
      assertRejected(await handshake(server, forged), 401, 'token_invalid');
    }

    assert.equal((await handshake(server, deviceHeaders(device))).status, 101);
    assert.equal((await handshake(server, deviceHeaders(device))).status, 101);
    assertRateLimited(await handshake(server, deviceHeaders(device)));
  });

  test('browser handshakes are not counted per client', async () => {
    await addUser(server, 'client-limit-user', password);
    const session = await scriptedLogin(server, 'client-limit-user', password);

    for (let attempt = 0; attempt < 3; attempt += 1) {
      assert.equal((await handshake(server, browserHeaders(server, session))).status, 101, `browser handshake ${attempt + 1}`);
    }
  });
});

describe('address key', () => {
  function request(remoteAddress: string, forwarded: string[] = []): IncomingMessage {
    return {
      socket: { remoteAddress },
      rawHeaders: forwarded.flatMap((value) => ['X-Forwarded-For', value]),
    } as unknown as IncomingMessage;
  }

  const trusted = new Set(['127.0.0.1']);
  const addresses: Array<{ name: string; request: IncomingMessage; expected: string }> = [
    { name: 'untrusted peer', request: request('192.0.2.5', ['198.51.100.1']), expected: '192.0.2.5' },
    { name: 'IPv4-mapped peer', request: request('::ffff:192.0.2.5'), expected: '192.0.2.5' },
    { name: 'trusted proxy', request: request('::ffff:127.0.0.1', ['198.51.100.1, 192.0.2.9']), expected: '192.0.2.9' },
    { name: 'forwarded with port', request: request('127.0.0.1', ['192.0.2.9:4711']), expected: '192.0.2.9' },
    { name: 'forwarded IPv6 with port', request: request('127.0.0.1', ['[2001:db8::1]:4711']), expected: '2001:db8::1' },
    { name: 'forwarded garbage', request: request('127.0.0.1', ['192.0.2.9, not-an-address']), expected: '127.0.0.1' },
    { name: 'forwarded empty entry', request: request('127.0.0.1', ['192.0.2.9,']), expected: '127.0.0.1' },
  ];
  for (const { name, request: incoming, expected } of addresses) {
    test(name, () => {
      assert.equal(clientAddress(incoming, trusted), expected);
    });
  }

  const keys: Array<[string, string]> = [
    ['192.0.2.5', '192.0.2.5'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::7', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::', '2001:db8:1:2::/64'],
    ['2001:db8::', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
  ];
  for (const [address, expected] of keys) {
    test(`key of ${address}`, () => {
      assert.equal(addressRateLimitKey(address), expected);
    });
  }
});
