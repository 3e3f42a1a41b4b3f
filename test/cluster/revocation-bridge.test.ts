// Revocations cross nodes: one recorded through node A closes the matching socket on node B through
// Redis, and one written by a management command reaches node B through the database poll.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { scriptedLogin } from '../support/browser-login.ts';
import { logEvents, startNodePair, waitForLogEvent, type NodePair } from '../support/cluster.ts';
import { deleteKeys, sharedRedisUrl, uniqueKeyPrefix } from '../support/redis.ts';
import { addDevice, addUser, deviceToken, runCli, type TestServer } from '../support/server.ts';
import { openBrowserSocket, openDeviceSocket } from '../support/websocket.ts';

const keyPrefix = uniqueKeyPrefix('revocations');
const password = 'cluster revocation tests use a long enough password';

let pair: NodePair;

/**
 * Takes the node's database connection until the returned function is called. Kysely's SQLite driver
 * runs every query of a node on one connection, so the node's revocation poll cannot read the table
 * meanwhile, while the other node, with its own connection, writes as usual.
 */
async function holdDatabase(node: TestServer): Promise<() => Promise<void>> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => { release = resolve; });
  let acquired!: () => void;
  const connectionTaken = new Promise<void>((resolve) => { acquired = resolve; });

  const finished = node.running.store.connection().execute(async () => {
    acquired();
    await released;
  });
  await connectionTaken;
  return async () => {
    release();
    await finished;
  };
}

before(async () => {
  pair = await startNodePair({ redisUrl: sharedRedisUrl, redisKeyPrefix: keyPrefix });
});

after(async () => {
  await pair?.close();
  await deleteKeys(sharedRedisUrl, keyPrefix);
});

describe('revocation bridge', () => {
  test('logout on node A closes socket on node B', async () => {
    await addUser(pair.a, 'cluster-logout', password);
    const session = await scriptedLogin(pair.a, 'cluster-logout', password);
    const socket = await openBrowserSocket(pair.b, session);

    const releaseDatabase = await holdDatabase(pair.b);
    try {
      const response = await pair.a.fetch(`${pair.a.url}/logout`, {
        method: 'POST',
        headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken },
      });
      assert.equal(response.status, 200);

      const closed = await socket.waitForClose();
      assert.equal(closed.code, 4403);
      assert.equal(closed.reason, 'token_revoked');
    } finally {
      await releaseDatabase();
    }

    const applied = logEvents(pair.b, 'revocation.applied');
    assert.equal(applied.length, 1);
    assert.equal(applied[0].source, 'redis');
    assert.equal(applied[0].kind, 'grant');
    assert.equal(applied[0].closed, 1);
  });

  test('devices remove run on node A reaches node B', async () => {
    const device = await addDevice(pair.a, 'cluster-removed');
    const socket = await openDeviceSocket(pair.b, { clientId: device.client_id, accessToken: await deviceToken(pair.a, device) });

    const result = await runCli(pair.a.dataDir, ['devices', 'remove', device.client_id]);
    assert.equal(result.code, 0, result.stderr);

    const closed = await socket.waitForClose();
    assert.equal(closed.code, 4403);
    // Node A announces the recorded revocation through Redis, and node B also polls the database.
    // Whichever comes first closes the socket, so the other finds nothing left to close.
    const applied = await waitForLogEvent(pair.b, 'revocation.applied', (entry) => entry.kind === 'client');
    assert.ok(['redis', 'database'].includes(String(applied.source)), String(applied.source));
  });
});
