// Onboarding with `authorizeDevice` and a DPoP key, then connecting with the stored refresh token
// and the same key, against a real server: the approval goes through `portcullis devices approve`.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { authorizeDevice, DeviceClient, generateDpopKey, type DeviceAuthorizationPrompt, type RefreshTokenStore } from '../../src/client/device.ts';
import { rememberSecret } from '../support/capture.ts';
import { addDevice, addUser, runServerCli, startTestServer, type CliResult, type TestServer } from '../support/server.ts';
import { clientOptions, logLines, opened, Recorder, tokensIssued } from './recorder.ts';

const owner = 'dpop-flow-owner';

let server: TestServer;

before(async () => {
  server = await startTestServer();
  await addUser(server, owner, 'dpop flow owner password');
});

after(async () => {
  await server?.close();
});

/** An in-memory refresh token store that starts empty. */
class MemoryStore implements RefreshTokenStore {
  readonly saved: string[] = [];

  async load(): Promise<string | null> {
    return this.saved.at(-1) ?? null;
  }

  async save(token: string): Promise<void> {
    rememberSecret(token);
    this.saved.push(token);
  }
}

function nonceRejections(clientId: string): number {
  return logLines(server).filter((line) => line.event === 'token.rejected' && line.client_id === clientId && line.error === 'use_dpop_nonce').length;
}

test('device flow then bound connection', async () => {
  const device = await addDevice(server, 'dpop-flow-device');
  const key = await generateDpopKey();
  const store = new MemoryStore();
  const prompts: DeviceAuthorizationPrompt[] = [];
  let approval: Promise<CliResult> | null = null;

  await authorizeDevice({
    issuer: server.url,
    clientId: device.client_id,
    credentials: { clientSecret: device.client_secret },
    ca: server.caPem,
    refreshTokenStore: store,
    dpop: key,
    onPrompt: (prompt) => {
      prompts.push(prompt);
      approval = runServerCli(server, ['devices', 'approve', prompt.userCode, '--user', owner]);
    },
  });

  assert.equal(prompts.length, 1);
  assert.match(prompts[0].verificationUri, /^https:\/\/localhost:\d+\//);
  const approved = await approval!;
  assert.equal(approved.code, 0, approved.stderr);
  assert.equal(store.saved.length, 1);
  assert.equal(tokensIssued(server, device.client_id, 'urn:ietf:params:oauth:grant-type:device_code'), 1);
  assert.equal(nonceRejections(device.client_id), 1);

  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, {
    credentials: { clientSecret: device.client_secret },
    refreshTokenStore: store,
    dpop: key,
  }));
  try {
    client.connect();
    await opened(recorder);
    await client.refresh();

    assert.deepEqual(recorder.states, ['connecting', 'open']);
    assert.equal(recorder.last?.welcome?.sub, owner);
    assert.equal(recorder.refreshedAt.length, 1);
    assert.equal(tokensIssued(server, device.client_id, 'refresh_token'), 2);
    assert.equal(store.saved.length, 3);
  } finally {
    await client.close();
  }
});

test('aborted device flow rejects', async () => {
  const device = await addDevice(server, 'dpop-flow-aborted');
  const controller = new AbortController();

  const flow = authorizeDevice({
    issuer: server.url,
    clientId: device.client_id,
    credentials: { clientSecret: device.client_secret },
    ca: server.caPem,
    refreshTokenStore: new MemoryStore(),
    dpop: await generateDpopKey(),
    onPrompt: () => controller.abort(),
    signal: controller.signal,
  });

  await assert.rejects(flow, { name: 'PortcullisClientError', code: 'aborted', retryable: false });
  assert.equal(tokensIssued(server, device.client_id, 'urn:ietf:params:oauth:grant-type:device_code'), 0);
});
