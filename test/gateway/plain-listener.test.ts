// The plain-HTTP listener that `plainPort` opens for a TLS-terminating proxy: requests and handshakes
// from a trusted proxy with `X-Forwarded-Proto: https` get the same routes as over HTTPS, and
// everything else gets 426 tls_required.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { scriptedLogin } from '../support/browser-login.ts';
import { rawHandshake } from '../support/raw-handshake.ts';
import { addDevice, addUser, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { deviceHeaders, openSocket, type DeviceCredentials } from '../support/websocket.ts';

const forwardedHttps = { 'X-Forwarded-Proto': 'https' };

interface PlainResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Sends one HTTP request from 127.0.0.1 to a plain listener on a fresh connection. */
function plainRequest(port: number, options: { method?: string; path: string; headers?: Record<string, string>; body?: string }): Promise<PlainResponse> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path, headers: options.headers, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    request.on('error', reject);
    request.end(options.body);
  });
}

function assertTlsRequired(response: PlainResponse): void {
  assert.equal(response.status, 426);
  assert.match(String(response.headers['content-type']), /^application\/json/);
  assert.equal(response.headers.upgrade, 'TLS/1.2, HTTP/1.1');
  assert.deepEqual(JSON.parse(response.body), {
    error: 'tls_required',
    error_description: 'The request must arrive over TLS (https:// or wss://).',
  });
}

/** Opens a device socket on the plain listener, as a proxy would forward it. */
function openPlainDeviceSocket(server: TestServer, device: DeviceCredentials, headers: Record<string, string> = forwardedHttps) {
  return openSocket({ server, url: `ws://127.0.0.1:${server.running.plainPort}/ws`, headers: { ...deviceHeaders(device), ...headers } });
}

function tokenRequestBody(): { headers: Record<string, string>; body: string } {
  return {
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(registered.client_id)}:${encodeURIComponent(registered.client_secret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
  };
}

let server: TestServer;
let registered: { client_id: string; client_secret: string };
let device: DeviceCredentials;

before(async () => {
  server = await startTestServer({ trustedProxies: ['127.0.0.1'], plainPort: 0 });
  registered = await addDevice(server, 'plain-device');
  device = { clientId: registered.client_id, accessToken: await deviceToken(server, registered) };
});

after(async () => {
  await server?.close();
});

describe('plain listener behind a trusted proxy', () => {
  test('server reports the plain port', () => {
    const { plainPort, plainListenUrl } = server.running;

    assert.equal(typeof plainPort, 'number');
    assert.notEqual(plainPort, server.port);
    assert.equal(plainListenUrl, `http://127.0.0.1:${plainPort}`);
  });

  test('device handshake with forwarded https gets welcome', async () => {
    const socket = await openPlainDeviceSocket(server, device);
    try {
      assert.equal(socket.welcome.type, 'welcome');
      assert.equal(socket.welcome.client_id, registered.client_id);
    } finally {
      await socket.close();
    }
  });

  const rejectedHandshakes: Array<{ name: string; headers: Record<string, string | string[]>; path?: string }> = [
    { name: 'no X-Forwarded-Proto', headers: {} },
    { name: 'X-Forwarded-Proto http', headers: { 'X-Forwarded-Proto': 'http' } },
    { name: 'two X-Forwarded-Proto https', headers: { 'X-Forwarded-Proto': ['https', 'https'] } },
    { name: 'an unknown path', headers: {}, path: '/elsewhere' },
  ];
  for (const { name, headers, path } of rejectedHandshakes) {
    test(`handshake with ${name} gets 426`, async () => {
      const response = await rawHandshake({ port: server.running.plainPort!, plain: true, path, headers: { ...deviceHeaders(device), ...headers } });

      assert.equal(response.status, 426);
      assert.equal(response.json?.error, 'tls_required');
      assert.equal(response.headers['x-portcullis-error'], 'tls_required');
      assert.equal(response.headers.upgrade, 'TLS/1.2, HTTP/1.1');
      assert.equal(response.headers['sec-websocket-accept'], undefined);
    });
  }

  test('healthz with forwarded https gets 200', async () => {
    const response = await plainRequest(server.running.plainPort!, { path: '/healthz', headers: forwardedHttps });

    assert.equal(response.status, 200);
    assert.equal(response.headers['strict-transport-security'], 'max-age=31536000');
  });

  test('healthz without forwarded https gets 426', async () => {
    const response = await plainRequest(server.running.plainPort!, { path: '/healthz' });

    assertTlsRequired(response);
    assert.ok(response.headers['x-request-id'], 'the rejection passes the request logging');
    assert.ok(server.logs.some((line) => line.includes('"event":"http.request"') && line.includes('"status":426')), 'the 426 is logged');
  });

  test('token request with forwarded https issues a usable token', async () => {
    const { headers, body } = tokenRequestBody();

    const response = await plainRequest(server.running.plainPort!, { method: 'POST', path: '/oauth/token', headers: { ...headers, ...forwardedHttps }, body });

    assert.equal(response.status, 200, response.body);
    const { access_token: accessToken } = JSON.parse(response.body) as { access_token: string };
    const socket = await openPlainDeviceSocket(server, { clientId: registered.client_id, accessToken });
    assert.equal(socket.welcome.client_id, registered.client_id);
    await socket.close();
  });

  test('token request without forwarded https gets 426', async () => {
    const { headers, body } = tokenRequestBody();

    const response = await plainRequest(server.running.plainPort!, { method: 'POST', path: '/oauth/token', headers, body });

    assertTlsRequired(response);
  });

  test('discovery names https endpoints', async () => {
    const response = await plainRequest(server.running.plainPort!, { path: '/.well-known/oauth-authorization-server', headers: forwardedHttps });

    assert.equal(response.status, 200);
    const metadata = JSON.parse(response.body) as Record<string, unknown>;
    assert.equal(metadata.issuer, server.url);
    assert.equal(metadata.token_endpoint, `${server.url}/oauth/token`);
    assert.equal(metadata.authorization_endpoint, `${server.url}/oauth/authorize`);
  });

  test('login sets Secure HttpOnly cookies', async () => {
    await addUser(server, 'plain-user', 'a long enough password');
    const setCookies: string[] = [];
    // Every request of the login, redirects included, goes through the plain listener as a proxy would send it.
    const throughProxy = (async (input: string | URL, init: RequestInit = {}) => {
      const url = new URL(String(input));
      assert.equal(url.origin, server.url, `the login left the public origin for ${url.href}`);
      const headers = new Headers(init.headers);
      headers.set('x-forwarded-proto', 'https');
      const response = await fetch(`http://127.0.0.1:${server.running.plainPort}${url.pathname}${url.search}`, { ...init, headers, redirect: 'manual' });
      setCookies.push(...response.headers.getSetCookie());
      return response;
    }) as typeof fetch;

    const session = await scriptedLogin({ ...server, fetch: throughProxy }, 'plain-user', 'a long enough password');

    assert.ok(session.sessionToken);
    assert.ok(setCookies.some((cookie) => cookie.startsWith('_interaction=')), `oidc-provider set no interaction cookie: ${setCookies.join(' | ')}`);
    assert.ok(setCookies.some((cookie) => cookie.startsWith('__Host-portcullis-session=')));
    for (const cookie of setCookies) {
      const attributes = cookie.split(';').map((part) => part.trim().toLowerCase());
      assert.ok(attributes.includes('secure'), `not Secure: ${cookie.split('=')[0]}`);
      assert.ok(attributes.includes('httponly'), `not HttpOnly: ${cookie.split('=')[0]}`);
    }
  });
});

describe('plain listener and an untrusted peer', () => {
  let other: TestServer;

  before(async () => {
    other = await startTestServer({ trustedProxies: ['127.0.0.2'], plainPort: 0 });
  });

  after(async () => {
    await other?.close();
  });

  test('handshake from 127.0.0.1 gets 426', async () => {
    const response = await rawHandshake({ port: other.running.plainPort!, plain: true, headers: { ...deviceHeaders(device), ...forwardedHttps } });

    assert.equal(response.status, 426);
    assert.equal(response.json?.error, 'tls_required');
    assert.ok(other.logs.some((line) => line.includes('"event":"handshake.rejected"') && line.includes('"code":"tls_required"')), 'the rejection is logged');
  });

  test('request from 127.0.0.1 gets 426', async () => {
    const response = await plainRequest(other.running.plainPort!, { path: '/healthz', headers: forwardedHttps });

    assertTlsRequired(response);
  });
});

describe('plain listener shutdown', () => {
  test('close ends plain sockets and stops listening', async () => {
    const closing = await startTestServer({ trustedProxies: ['127.0.0.1'], plainPort: 0 });
    let closed = false;
    try {
      const credentials = await addDevice(closing, 'plain-closing');
      const socket = await openPlainDeviceSocket(closing, { clientId: credentials.client_id, accessToken: await deviceToken(closing, credentials) });
      const idle = net.connect({ host: '127.0.0.1', port: closing.running.plainPort! });
      await new Promise<void>((resolve, reject) => idle.once('connect', resolve).once('error', reject));
      // A reset at shutdown is expected and must not fail the test as an unhandled error.
      idle.on('error', () => {});
      const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()));

      await closing.close();
      closed = true;

      assert.equal((await socket.waitForClose()).code, 1001);
      await idleClosed;
      const connectOutcome = await new Promise<string>((resolve) => {
        net.connect({ host: '127.0.0.1', port: closing.running.plainPort! })
          .once('connect', function onConnect(this: net.Socket) { this.destroy(); resolve('connected'); })
          .once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
      });
      assert.equal(connectOutcome, 'ECONNREFUSED');
    } finally {
      if (!closed) {
        await closing.close();
      }
    }
  });
});
