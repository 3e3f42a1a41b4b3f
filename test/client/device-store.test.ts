// The device SDK with a refresh token store: tokens from the device authorization grant rotate on
// every use, and the SDK must store each new one before it uses the access token that came with it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { DeviceClient, type RefreshTokenStore } from '../../src/client/device.ts';
import { addDevice, addUser, runCli, startTestServer, type TestServer } from '../support/server.ts';
import { clientOptions, logLines, opened, Recorder, tokensIssued } from './recorder.ts';

const username = 'device-owner';
const password = 'device owner password';

let server: TestServer;

before(async () => {
  server = await startTestServer();
  await addUser(server, username, password);
});

after(async () => {
  await server?.close();
});

/** Runs the device authorization grant with `devices approve` and returns the first refresh token. */
async function deviceFlowRefreshToken(target: TestServer, device: { client_id: string; client_secret: string }): Promise<string> {
  const authorization = `Basic ${Buffer.from(`${device.client_id}:${device.client_secret}`).toString('base64')}`;
  const post = async (endpoint: string, form: Record<string, string>) => {
    const response = await target.fetch(`${target.url}${endpoint}`, {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
    return await response.json() as Record<string, string>;
  };

  const code = await post('/oauth/device/authorize', { scope: 'gateway' });
  const approval = await runCli(target.dataDir, ['devices', 'approve', code.user_code, '--user', username]);
  assert.equal(approval.code, 0, approval.stderr);
  const tokens = await post('/oauth/token', { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: code.device_code });
  assert.equal(typeof tokens.refresh_token, 'string', `the device code grant failed: ${tokens.error}`);
  return tokens.refresh_token;
}

/** An in-memory store whose next `failures` saves reject, as a full disk would. */
class FlakyStore implements RefreshTokenStore {
  readonly saved: string[] = [];
  loads = 0;
  failures = 0;

  constructor(private token: string) {}

  async load(): Promise<string | null> {
    this.loads += 1;
    return this.token;
  }

  async save(token: string): Promise<void> {
    if (this.failures > 0) {
      this.failures -= 1;
      throw new Error('disk full');
    }
    this.token = token;
    this.saved.push(token);
  }
}

// A failing save is how these tests see the order: a client that uses a new access token before its
// refresh token is safely stored would use it here too, and the server would log that use.
describe('refresh token store', () => {
  let device: { client_id: string; client_secret: string };
  let store: FlakyStore;
  let seeded: string;
  let recorder: Recorder;
  let client: DeviceClient;
  let connectionId: string;

  before(async () => {
    device = await addDevice(server, 'sdk-rotating');
    seeded = await deviceFlowRefreshToken(server, device);
    store = new FlakyStore(seeded);
    recorder = new Recorder();
    client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret }, refreshTokenStore: store }));
  });

  after(async () => {
    await client?.close();
  });

  const refreshGrants = () => tokensIssued(server, device.client_id, 'refresh_token');
  const inBandRefreshes = () => logLines(server).filter((line) => line.event === 'connection.refreshed' && line.connection_id === connectionId).length;

  test('failed save keeps the token unused', async () => {
    store.failures = 1;
    client.connect();
    await opened(recorder);
    connectionId = recorder.last!.welcome!.connectionId;

    assert.deepEqual(recorder.changes[1], { state: 'reconnecting', reason: 'refresh_token_store_failed', retryInMs: recorder.changes[1].retryInMs });
    assert.deepEqual(recorder.states, ['connecting', 'reconnecting', 'connecting', 'open']);
    assert.equal(refreshGrants(), 2);
    assert.equal(store.saved.length, 1);
    assert.equal(store.loads, 1, 'the second grant read the store instead of the rotated token in memory');
    const handshakes = logLines(server).filter((line) => line.event === 'handshake.accepted' && line.client_id === device.client_id);
    assert.deepEqual(handshakes.map((line) => line.connection_id), [connectionId]);
    assert.equal(recorder.last?.welcome?.sub, username);
  });

  test('20 concurrent refreshes make one request', async () => {
    const grantsBefore = refreshGrants();

    const results = await Promise.allSettled(Array.from({ length: 20 }, () => client.refresh()));

    assert.deepEqual(results.map((result) => result.status), Array(20).fill('fulfilled'));
    assert.equal(refreshGrants() - grantsBefore, 1);
    assert.equal(inBandRefreshes(), 1);
    assert.equal(recorder.refreshedAt.length, 1);
    assert.equal(store.saved.length, 2);
  });

  test('refresh with failed save is not sent', async () => {
    const grantsBefore = refreshGrants();
    store.failures = 1;

    const results = await Promise.allSettled(Array.from({ length: 20 }, () => client.refresh()));
    // A later confirmed refresh on the same socket orders every earlier auth frame before it.
    await client.refresh();

    assert.deepEqual(results.map((result) => result.status === 'rejected' && (result.reason as { code?: string }).code), Array(20).fill('refresh_token_store_failed'));
    assert.equal(refreshGrants() - grantsBefore, 2);
    assert.equal(inBandRefreshes(), 2);
    assert.equal(recorder.refreshedAt.length, 2);
    assert.equal(store.saved.length, 3);
  });

  test('never presents a used token', async () => {
    for (let round = 0; round < 3; round += 1) {
      await client.refresh();
    }

    assert.equal(store.saved.length, 6);
    const all = [seeded, ...store.saved];
    assert.equal(new Set(all).size, all.length, 'a refresh token was saved twice');
    assert.equal(store.loads, 1);
    const rejected = logLines(server).filter((line) => line.event === 'token.rejected' && line.client_id === device.client_id);
    assert.deepEqual(rejected, []);
    assert.equal(client.state, 'open');
    assert.equal(inBandRefreshes(), 5);
  });
});
