// oidc-provider's request-context storage is switched off once its requests are done, so that its
// async hooks do not slow down the rest of the process. The test reads the storage's `enabled` flag,
// which Node exposes on the hook-based AsyncLocalStorage of Node 20 and 22.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import providerRequestContext from 'oidc-provider/lib/helpers/als.js';

import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';

const storage = providerRequestContext as unknown as { enabled?: unknown };
const runtimeSkip = typeof storage.enabled === 'boolean' ? false : 'this Node has no hook-based AsyncLocalStorage';
let server: TestServer;

before(async () => {
  server = await startTestServer();
});

after(async () => {
  await server.close();
});

test('storage off after token requests', { skip: runtimeSkip }, async () => {
  const device = await addDevice(server, 'context-device');
  const tokens = await Promise.all([deviceToken(server, device), deviceToken(server, device), deviceToken(server, device)]);
  assert.equal(tokens.length, 3);
  assert.ok(tokens.every((token) => token.split('.').length === 3), 'each request got a JWT');

  // The response's close event, which switches the storage off, may follow the body by a tick.
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(storage.enabled, false);
});
