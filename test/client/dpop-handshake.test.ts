// The device SDK with DPoP-bound tokens against a real gateway over real TLS. It covers the
// handshake with the `DPoP` scheme and a proof, the in-band refresh with a proof of the new token,
// and the rule that a rejected proof is retried once before the token is blamed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { DeviceClient, generateDpopKey } from '../../src/client/device.ts';
import { decideOnRejection } from '../../src/client/policy.ts';
import { addDevice, startTestServer, type TestServer } from '../support/server.ts';
import { clientOptions, logLines, opened, Recorder, stopped, tokensIssued } from './recorder.ts';

let server: TestServer;
let shortLived: TestServer;

before(async () => {
  [server, shortLived] = await Promise.all([startTestServer(), startTestServer({ accessTokenTtlSeconds: 30 })]);
});

after(async () => {
  await Promise.all([server?.close(), shortLived?.close()]);
});

function handshakeEvents(target: TestServer, clientId: string): Array<[event: unknown, code: unknown]> {
  return logLines(target).filter((line) => String(line.event).startsWith('handshake.') && line.client_id === clientId).map((line) => [line.event, line.code]);
}

function nonceRejections(target: TestServer, clientId: string): number {
  return logLines(target).filter((line) => line.event === 'token.rejected' && line.client_id === clientId && line.error === 'use_dpop_nonce').length;
}

test('bound device connects', async () => {
  const device = await addDevice(server, 'dpop-sdk-connect');
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret }, dpop: true }));
  try {
    client.connect();
    await opened(recorder);

    assert.deepEqual(recorder.states, ['connecting', 'open']);
    assert.equal(recorder.last?.welcome?.clientId, device.client_id);
    // The gateway refuses a bound token under the Bearer scheme, so an accepted handshake shows that
    // the SDK sent `Authorization: DPoP` with a valid proof.
    assert.deepEqual(handshakeEvents(server, device.client_id), [['handshake.accepted', undefined]]);
    assert.equal(tokensIssued(server, device.client_id, 'client_credentials'), 1);
    assert.equal(nonceRejections(server, device.client_id), 1);
    assert.equal(typeof await client.dpopThumbprint(), 'string');
  } finally {
    await client.close();
  }
});

test('dpop-required device connects only with a key', async () => {
  const device = await addDevice(server, 'dpop-sdk-required', ['--dpop-required']);
  const withoutKey = new Recorder();
  const plain = new DeviceClient(clientOptions(server, device.client_id, withoutKey, { credentials: { clientSecret: device.client_secret } }));
  try {
    plain.connect();
    await stopped(withoutKey);
  } finally {
    await plain.close();
  }
  assert.deepEqual(withoutKey.states, ['connecting', 'stopped']);
  // oidc-provider refuses a token request of such a client without a proof as `invalid_grant`.
  assert.equal(withoutKey.last?.reason, 'invalid_grant');
  assert.deepEqual(handshakeEvents(server, device.client_id), []);

  const withKey = new Recorder();
  const bound = new DeviceClient(clientOptions(server, device.client_id, withKey, { credentials: { clientSecret: device.client_secret }, dpop: await generateDpopKey() }));
  try {
    bound.connect();
    await opened(withKey);
    assert.deepEqual(withKey.states, ['connecting', 'open']);
  } finally {
    await bound.close();
  }
});

test('in-band refresh keeps the bound connection', async () => {
  const device = await addDevice(shortLived, 'dpop-sdk-in-band');
  const recorder = new Recorder();
  // With 30 s tokens and a 27 s margin, the refresh is due 3 s after each token arrives.
  const client = new DeviceClient(clientOptions(shortLived, device.client_id, recorder, {
    credentials: { clientSecret: device.client_secret },
    dpop: true,
    refreshMarginSeconds: 27,
  }));
  try {
    client.connect();
    await opened(recorder);
    const welcome = recorder.last!.welcome!;
    await recorder.until(() => recorder.refreshedAt.length >= 2, 'two in-band refreshes');

    assert.deepEqual(recorder.states, ['connecting', 'open']);
    assert.ok(recorder.refreshedAt[1] > welcome.expiresAt, 'the second auth_ok did not move the expiry');
    const refreshed = logLines(shortLived).filter((line) => line.event === 'connection.refreshed' && line.connection_id === welcome.connectionId);
    assert.ok(refreshed.length >= 2, `the server logged ${refreshed.length} refreshes of the connection`);
    const rejected = logLines(shortLived).filter((line) => line.event === 'connection.auth_rejected' && line.connection_id === welcome.connectionId);
    assert.deepEqual(rejected, []);

    const commands = `devices/${device.client_id}/commands`;
    await client.subscribe(commands);
    await client.publish(commands, 'after bound refresh');
    await recorder.until(() => recorder.messages.some((message) => message.data === 'after bound refresh'), 'message after refresh');
    assert.deepEqual(recorder.states, ['connecting', 'open']);
  } finally {
    await client.close();
  }
});

test('logs hold no token or proof', async () => {
  const device = await addDevice(server, 'dpop-sdk-canary');
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, { credentials: { clientSecret: device.client_secret }, dpop: true }));
  try {
    client.connect();
    await opened(recorder);
    await client.refresh();
  } finally {
    await client.close();
  }

  const reported = [...recorder.logLines, JSON.stringify(recorder.changes)].join('\n');
  assert.ok(recorder.logLines.length > 0, 'the client logged nothing');
  assert.doesNotMatch(reported, /eyJ[\w-]+\.[\w-]+\./, 'a JWT was logged');
});

test('rejected proofs end after one retry and one new token', async () => {
  // The certificate also names 127.0.0.1, so TLS passes, but every proof names that host in its
  // `htu` while the gateway expects its public URL, https://localhost:<port>/ws.
  const device = await addDevice(server, 'dpop-sdk-wrong-htu');
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, device.client_id, recorder, {
    url: `wss://127.0.0.1:${server.port}/ws`,
    credentials: { clientSecret: device.client_secret },
    dpop: true,
    backoff: { baseMs: 1, capMs: 10 },
  }));
  try {
    client.connect();
    await stopped(recorder);
  } finally {
    await client.close();
  }

  const rejected: Array<[unknown, unknown]> = [['handshake.rejected', 'invalid_dpop_proof']];
  assert.deepEqual(handshakeEvents(server, device.client_id), [...rejected, ...rejected, ...rejected]);
  assert.deepEqual(recorder.changes.map((change) => [change.state, change.reason]), [
    ['connecting', 'started'],
    ['reconnecting', 'invalid_dpop_proof'],
    ['connecting', 'invalid_dpop_proof'],
    ['reconnecting', 'invalid_dpop_proof'],
    ['connecting', 'invalid_dpop_proof'],
    ['stopped', 'invalid_dpop_proof'],
  ]);
  assert.equal(recorder.last?.status, 401);
  // The first proof retry reuses the token; only the second rejection gets a new one.
  assert.equal(tokensIssued(server, device.client_id, 'client_credentials'), 2);
});

// A proof rejected for a passing reason, such as a clock step, cannot be provoked without faking
// the SDK's clock, so these cases pin the decision that `DeviceClient` follows after a rejection.
const proofRejections: Array<[what: string, fresh: boolean, retried: boolean, action: string]> = [
  ['first rejection, cached token', false, false, 'reconnect'],
  ['first rejection, fresh token', true, false, 'reconnect'],
  ['second rejection, cached token', false, true, 'refresh_then_reconnect'],
  ['second rejection, fresh token', true, true, 'stop'],
];

for (const [what, fresh, retried, action] of proofRejections) {
  test(`invalid_dpop_proof ${what}`, () => {
    const decision = decideOnRejection({ status: 401, code: 'invalid_dpop_proof', retryAfterMs: null }, fresh, retried);

    assert.equal(decision.action, action);
    assert.equal(decision.reason, 'invalid_dpop_proof');
  });
}

test('token_invalid is not retried as a proof', () => {
  assert.equal(decideOnRejection({ status: 401, code: 'token_invalid', retryAfterMs: null }, true, false).action, 'stop');
});
