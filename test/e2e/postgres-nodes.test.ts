// Two servers (nodes) on one PostgreSQL schema, as a deployment behind a load balancer runs them.
// Each node has its own data directory for TLS material and the admin socket, and its own
// connection pool. Both have the same public URL, so tokens that one node issues verify on the
// other. Management commands run through the real CLI with node A's configuration.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { decodeJwt } from 'jose';

import { scriptedLogin } from '../support/browser-login.ts';
import { createTestSchema, type TestSchema } from '../support/postgres.ts';
import { rawHandshake } from '../support/raw-handshake.ts';
import { addDevice, addUser, deviceToken, runServerCli, startTestServer, type TestServer } from '../support/server.ts';
import { browserHeaders, openDeviceSocket, probeDeviceConnection } from '../support/websocket.ts';

const password = 'postgres node tests use a long enough password';
const deviceCodeGrantType = 'urn:ietf:params:oauth:grant-type:device_code';

let schema: TestSchema;
let nodeA: TestServer;
let nodeB: TestServer;
/** Node B as a client reaches it through a load balancer pinned to it: A's public URL, B's listener. */
let viaB: TestServer;

/**
 * Returns a view of `node` whose `url` is the shared public URL and whose `fetch` sends requests
 * for that origin to the node's own listener, so helpers that follow absolute redirects stay on it.
 * The node's `fetch` trusts only its own development CA, so a request that reached the other node
 * would fail its TLS handshake instead of passing unnoticed.
 */
function pinnedTo(node: TestServer, publicUrl: string): TestServer {
  const publicOrigin = new URL(publicUrl).origin;
  const ownOrigin = `https://localhost:${node.port}`;
  const pinnedFetch = (input: string | URL, init?: RequestInit) => {
    const url = new URL(String(input));
    const target = url.origin === publicOrigin ? new URL(`${url.pathname}${url.search}`, ownOrigin) : url;
    return node.fetch(target, init);
  };
  return { ...node, url: publicUrl, fetch: pinnedFetch as typeof fetch };
}

function basicAuthorization(device: { client_id: string; client_secret: string }): string {
  return `Basic ${Buffer.from(`${device.client_id}:${device.client_secret}`).toString('base64')}`;
}

before(async () => {
  schema = await createTestSchema();
  nodeA = await startTestServer({ databaseUrl: schema.url });
  nodeB = await startTestServer({ databaseUrl: schema.url, publicUrl: nodeA.url });
  viaB = pinnedTo(nodeB, nodeA.url);
});

after(async () => {
  await nodeB?.close();
  await nodeA?.close();
  await schema?.drop();
});

test('nodes publish the same signing keys', async () => {
  const kids = async (node: TestServer) => {
    const response = await node.fetch(`${node.url}/oauth/jwks`);
    assert.equal(response.status, 200);
    const { keys } = await response.json() as { keys: { kid: string }[] };
    return keys.map((key) => key.kid).sort();
  };

  const fromA = await kids(nodeA);
  assert.equal(fromA.length, 1);
  assert.deepEqual(await kids(viaB), fromA);
});

test('device tokens verify on the other node', async () => {
  const device = await addDevice(nodeA, 'shared-meter');
  const tokenFromA = await deviceToken(nodeA, device);
  const tokenFromB = await deviceToken(viaB, device);

  const onB = await probeDeviceConnection(nodeB.port, nodeB.caPem, device.client_id, tokenFromA);
  assert.equal(onB.status, 101, `node B rejected node A's token: ${onB.error}`);
  assert.equal(onB.welcome?.sub, device.client_id);
  const onA = await probeDeviceConnection(nodeA.port, nodeA.caPem, device.client_id, tokenFromB);
  assert.equal(onA.status, 101, `node A rejected node B's token: ${onA.error}`);
});

test('user added with A config logs in on B', async () => {
  await addUser(nodeA, 'carol', password);

  const session = await scriptedLogin(viaB, 'carol', password);
  assert.equal(decodeJwt(session.sessionToken).sub, 'carol');

  const onB = await rawHandshake({ port: nodeB.port, ca: nodeB.caPem, headers: browserHeaders(viaB, session) });
  assert.equal(onB.status, 101);
  const onA = await rawHandshake({ port: nodeA.port, ca: nodeA.caPem, headers: browserHeaders(nodeA, session) });
  assert.equal(onA.status, 101);
});

test('refresh on both nodes rotates once', async () => {
  const device = await addDevice(nodeA, 'racing-meter');
  await addUser(nodeA, 'race-owner', password);
  const post = (node: TestServer, path: string, body: Record<string, string>) => node.fetch(`${node.url}${path}`, {
    method: 'POST',
    headers: { authorization: basicAuthorization(device), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(body).toString(),
  });

  const authorization = await (await post(nodeA, '/oauth/device/authorize', { scope: 'gateway' })).json() as { device_code: string; user_code: string };
  const approved = await runServerCli(nodeA, ['devices', 'approve', authorization.user_code, '--user', 'race-owner']);
  assert.equal(approved.code, 0, approved.stderr);
  const issued = await (await post(viaB, '/oauth/token', { grant_type: deviceCodeGrantType, device_code: authorization.device_code })).json() as { refresh_token: string; access_token: string };
  const grantId = decodeJwt(issued.access_token).grant_id as string;
  assert.equal(typeof grantId, 'string');

  const results = await Promise.all(Array.from({ length: 20 }, async (_, index) => {
    const response = await post(index % 2 === 0 ? nodeA : viaB, '/oauth/token', { grant_type: 'refresh_token', refresh_token: issued.refresh_token });
    return { node: index % 2 === 0 ? 'A' : 'B', status: response.status, body: await response.json() as { error?: string; refresh_token?: string } };
  }));

  const winners = results.filter((result) => result.status === 200);
  assert.equal(winners.length, 1, JSON.stringify(results.map(({ node, status }) => `${node}:${status}`)));
  for (const loser of results.filter((result) => result.status !== 200)) {
    assert.equal(loser.status, 400);
    assert.equal(loser.body.error, 'invalid_grant');
  }

  // The losing requests count as reuse, which revokes the grant for both nodes.
  for (const node of [nodeA, viaB]) {
    const afterRace = await post(node, '/oauth/token', { grant_type: 'refresh_token', refresh_token: winners[0].body.refresh_token! });
    assert.equal(afterRace.status, 400);
    assert.equal((await afterRace.json() as { error?: string }).error, 'invalid_grant');
  }
  const denied = await nodeB.running.store.selectFrom('revoked_grants').select('grant_id').where('grant_id', '=', grantId).execute();
  assert.equal(denied.length, 1);
  const left = await nodeA.running.store.selectFrom('oidc_payloads').select('id').where('grant_id', '=', grantId).execute();
  assert.deepEqual(left, []);
});

test('device removed with A config closes on B', async () => {
  const device = await addDevice(nodeA, 'removed-meter');
  const socket = await openDeviceSocket(viaB, { clientId: device.client_id, accessToken: await deviceToken(nodeA, device) });

  const removed = await runServerCli(nodeA, ['devices', 'remove', device.client_id]);
  assert.equal(removed.code, 0, removed.stderr);

  assert.deepEqual(await socket.waitForClose(), { code: 4403, reason: 'token_revoked' });
});
