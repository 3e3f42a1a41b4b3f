// A device written with Debian's python3-websockets 10.4, which Portcullis did not write, gets a
// token with its client secret, connects, publishes to its own commands channel and receives the
// message, and is rejected when it moves the token into the URL.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { runPythonDevice } from '../support/python-device.ts';
import { addDevice, startTestServer, type TestServer } from '../support/server.ts';
import { commandsChannel } from '../support/websocket.ts';

// MESSAGE_DATA of device_client.py, written out again so the test does not trust the script's report of it.
const pythonMessageData = { text: 'hello from python websockets', sequence: 1 };

/** The one JSON line `device_client.py` prints. */
interface PythonClientResult {
  token: { status: number; token_type: string; expires_in: number; exp: number };
  header_auth: {
    subprotocol: string | null;
    welcome: { type: string; connection_id: string; sub: string; client_id: string; expires_at: number };
    requests: {
      subscribe: { type: 'subscribe'; id: string | number; channel: string };
      publish: { type: 'publish'; id: string | number; channel: string; data: unknown };
    };
    subscribed: Record<string, unknown>;
    published: Record<string, unknown>;
    message: { type: string; channel: string; data: unknown; publisher: unknown; timestamp: unknown };
  };
  query_auth: { accepted: boolean; status: number; error: string | null };
}


let server: TestServer;
let device: { client_id: string; client_secret: string };
let result: PythonClientResult;

before(async () => {
  server = await startTestServer();
  device = await addDevice(server, 'python-device');
  const run = await runPythonDevice('device_client.py', server, device);
  assert.equal(run.code, 0, `device_client.py failed:\n${run.stderr}`);
  result = JSON.parse(run.stdout.trim()) as PythonClientResult;
});

after(async () => {
  await server.close();
});

test('python client gets a bearer token', () => {
  assert.equal(result.token.status, 200);
  assert.equal(result.token.token_type, 'Bearer');
  assert.ok(Number.isInteger(result.token.expires_in), 'expires_in is not a whole number of seconds');
  assert.ok(result.token.expires_in > 0, `expires_in ${result.token.expires_in} is not positive`);
  assert.ok(result.token.expires_in <= server.options.accessTokenTtlSeconds, `expires_in ${result.token.expires_in} exceeds the access token lifetime`);
});

test('python client receives the welcome frame', () => {
  const { welcome } = result.header_auth;
  assert.equal(result.header_auth.subprotocol, 'portcullis.v1');
  assert.equal(welcome.type, 'welcome');
  assert.equal(welcome.sub, device.client_id);
  assert.equal(welcome.client_id, device.client_id);
  assert.equal(welcome.expires_at, result.token.exp);
  assert.equal(typeof welcome.connection_id, 'string');
  assert.notEqual(welcome.connection_id, '');
});

test('python client subscribes to its commands', () => {
  const { requests, subscribed } = result.header_auth;
  assert.equal(requests.subscribe.channel, commandsChannel(device.client_id));
  assert.deepEqual(subscribed, { type: 'subscribed', id: requests.subscribe.id, channel: requests.subscribe.channel });
});

test('python client receives its own publish', () => {
  const { requests, published, message } = result.header_auth;
  assert.deepEqual(published, { type: 'published', id: requests.publish.id, channel: requests.publish.channel });

  assert.equal(message.type, 'message');
  assert.equal(message.channel, commandsChannel(device.client_id));
  assert.deepEqual(message.data, pythonMessageData);
  assert.deepEqual(message.publisher, { client_id: device.client_id, sub: device.client_id });
  assert.equal(typeof message.timestamp, 'number');
});

test('token in query string is rejected', () => {
  assert.equal(result.query_auth.accepted, false);
  assert.equal(result.query_auth.status, 400);
  assert.equal(result.query_auth.error, 'token_in_url');
});

test('rejection log omits query and secret', () => {
  const rejections = server.logs
    .map((line) => JSON.parse(line) as { event?: string; code?: string; path?: string; client_id?: string })
    .filter((entry) => entry.event === 'handshake.rejected');
  assert.equal(rejections.length, 1);
  assert.equal(rejections[0].code, 'token_in_url');
  assert.equal(rejections[0].path, '/ws');
  assert.equal(rejections[0].client_id, device.client_id);

  const leaking = server.logs.filter((line) => line.includes(device.client_secret) || line.includes('access_token='));
  assert.deepEqual(leaking, []);
});
