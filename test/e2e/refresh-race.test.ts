import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { addDevice, addUser, runCli, startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server.close();
});

test('concurrent refreshes rotate once and revoke', async () => {
  const device = await addDevice(server, 'racing-device');
  await addUser(server, 'race-owner', 'a long enough password');
  const basic = `Basic ${Buffer.from(`${device.client_id}:${device.client_secret}`).toString('base64')}`;
  const post = (path: string, body: string) => server.fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    body,
  });

  const authorization = await (await post('/oauth/device/authorize', 'scope=gateway')).json() as { device_code: string; user_code: string };
  const approved = await runCli(server.dataDir, ['devices', 'approve', authorization.user_code, '--user', 'race-owner']);
  assert.equal(approved.code, 0, approved.stderr);
  const issued = await (await post('/oauth/token', `grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=${authorization.device_code}`)).json() as { refresh_token: string; access_token: string };

  const results = await Promise.all(Array.from({ length: 20 }, async () => {
    const response = await post('/oauth/token', `grant_type=refresh_token&refresh_token=${issued.refresh_token}`);
    return { status: response.status, body: await response.json() as { error?: string; refresh_token?: string } };
  }));

  const winners = results.filter((result) => result.status === 200);
  assert.equal(winners.length, 1);
  for (const loser of results.filter((result) => result.status !== 200)) {
    assert.equal(loser.status, 400);
    assert.equal(loser.body.error, 'invalid_grant');
  }

  // The losing requests count as reuse, so even the winner's new refresh token is dead.
  const afterRace = await post('/oauth/token', `grant_type=refresh_token&refresh_token=${winners[0].body.refresh_token}`);
  assert.equal(afterRace.status, 400);
  const revoked = await server.running.store.selectFrom('revoked_grants').select('grant_id').execute();
  assert.equal(revoked.length, 1);
});
