import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { scriptedLogin } from './browser-login.ts';
import { rawHandshake } from './raw-handshake.ts';
import { addDevice, addUser, deviceToken, startTestServer, type TestServer } from './server.ts';

let server: TestServer;
before(async () => { server = await startTestServer(); });
after(async () => { await server.close(); });

test('harness device and browser paths', async () => {
  const device = await addDevice(server, 'smoke-device');
  const token = await deviceToken(server, device);
  const accepted = await rawHandshake({ port: server.port, ca: server.caPem, headers: { Authorization: `Bearer ${token}`, 'X-Client-Id': 'smoke-device' } });
  assert.equal(accepted.status, 101);

  await addUser(server, 'smoke-user', 'a long enough password');
  const session = await scriptedLogin(server, 'smoke-user', 'a long enough password');
  const browser = await rawHandshake({
    port: server.port,
    ca: server.caPem,
    headers: { Cookie: session.cookieHeader, Origin: server.url, 'Sec-WebSocket-Protocol': `portcullis.v1, portcullis.csrf.${session.csrfToken}` },
  });
  assert.equal(browser.status, 101);
  assert.equal(browser.headers['sec-websocket-protocol'], 'portcullis.v1');
});
