// The audit trail end to end: real security events on a real server and real management commands,
// each stored exactly once and without secrets, on every store backend.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { queryAuditEvents, type StoredAuditRecord } from '../../src/audit/audit-store.ts';
import { openStore } from '../../src/store/database.ts';
import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { rememberSecret } from '../support/capture.ts';
import { LeakScanner } from '../support/log-hygiene.ts';
import { approveDevice, redeemRefreshToken, tokensOf } from '../support/oauth-flows.ts';
import { rawHandshake } from '../support/raw-handshake.ts';
import { addDevice, addUser, deviceToken, runServerCli, startTestServer, type TestServer } from '../support/server.ts';
import { storeBackends, type TestStoreLocation } from '../support/store-backends.ts';
import { openDeviceSocket, socketWaitMs } from '../support/websocket.ts';

const password = 'audit-trail correct horse 1';
const wrongPassword = 'audit-trail wrong horse 22';

/** What the test drove and must find: secrets to look for, and ids to match rows against. */
interface Driven {
  secrets: string[];
  browserGrantId: string;
  deviceGrantId: string;
}

async function expectCli(server: TestServer, args: string[]): Promise<string> {
  const result = await runServerCli(server, args);
  assert.equal(result.code, 0, `portcullis ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

async function driveBrowserEvents(server: TestServer, secrets: string[]): Promise<string> {
  await addUser(server, 'alice', password);
  const session: ScriptedSession = await scriptedLogin(server, 'alice', password);
  rememberSecret(session.sessionToken);
  rememberSecret(session.csrfToken);
  secrets.push(session.sessionToken, session.csrfToken);

  rememberSecret(wrongPassword);
  await assert.rejects(scriptedLogin(server, 'alice', wrongPassword), /answered 401/);

  const rejected = await rawHandshake({
    port: server.port,
    ca: server.caPem,
    headers: { Cookie: session.cookieHeader, Origin: 'https://attacker.invalid', 'Sec-WebSocket-Protocol': `portcullis.v1, portcullis.csrf.${session.csrfToken}` },
  });
  assert.equal(rejected.status, 403);

  const row = await server.running.store.selectFrom('browser_sessions').select('grant_id').where('username', '=', 'alice').executeTakeFirstOrThrow();
  return row.grant_id;
}

async function driveDeviceEvents(server: TestServer, secrets: string[]): Promise<string> {
  const sensor = await addDevice(server, 'sensor-1');
  const accessToken = await deviceToken(server, sensor);
  rememberSecret(accessToken);
  secrets.push(sensor.client_secret, accessToken);

  const socket = await openDeviceSocket(server, { clientId: 'sensor-1', accessToken });
  const closed = socket.waitForClose();
  await expectCli(server, ['devices', 'remove', 'sensor-1']);
  assert.equal((await closed).code, 4403);

  const meter = await addDevice(server, 'meter-1', ['--owner', 'alice']);
  const grant = await approveDevice(server, meter, 'alice');
  const rotated = tokensOf(await redeemRefreshToken(server, meter, grant.refreshToken));
  const reused = await redeemRefreshToken(server, meter, grant.refreshToken);
  assert.equal(reused.status, 400);
  assert.equal(reused.body.error, 'invalid_grant');
  for (const secret of [meter.client_secret, grant.accessToken, grant.refreshToken, rotated.accessToken, rotated.refreshToken]) {
    rememberSecret(secret);
    secrets.push(secret);
  }
  return grant.grantId;
}

async function driveOperatorEvents(server: TestServer, browserGrantId: string): Promise<void> {
  await expectCli(server, ['keys', 'rotate']);
  await expectCli(server, ['sessions', 'revoke', browserGrantId]);
  await expectCli(server, ['users', 'disable', 'alice']);
  await expectCli(server, ['users', 'enable', 'alice']);
  const changed = await runServerCli(server, ['users', 'passwd', 'alice', '--password-stdin'], 'audit-trail new horse 333\n');
  assert.equal(changed.code, 0, changed.stderr);
}

function eventsNamed(rows: StoredAuditRecord[], event: string): StoredAuditRecord[] {
  return rows.filter((row) => row.event === event);
}

for (const backend of storeBackends) {
  describe(`audit trail on ${backend.name}`, () => {
    let target: TestStoreLocation;
    let server: TestServer;
    let rows: StoredAuditRecord[] = [];
    const driven: Driven = { secrets: [password, wrongPassword], browserGrantId: '', deviceGrantId: '' };

    before(async () => {
      target = await backend.createLocation();
      server = await startTestServer({ dataDir: target.location.dataDir, databaseUrl: target.location.databaseUrl });
      try {
        driven.browserGrantId = await driveBrowserEvents(server, driven.secrets);
        driven.deviceGrantId = await driveDeviceEvents(server, driven.secrets);
        await driveOperatorEvents(server, driven.browserGrantId);
      } finally {
        // Closing the server writes every queued event, so the rows below are complete.
        await server.close();
      }
      const store = await openStore(target.location);
      try {
        rows = await queryAuditEvents(store, { sinceMs: 0, events: [], limit: 10_000 });
      } finally {
        await store.destroy();
      }
    }, { timeout: 8 * socketWaitMs });
    after(async () => {
      await target?.remove();
    });

    test('login events once each', () => {
      const succeeded = eventsNamed(rows, 'login.succeeded');
      assert.equal(succeeded.length, 1);
      assert.equal(succeeded[0].fields.username, 'alice');
      assert.equal(typeof succeeded[0].fields.ip, 'string');
      assert.equal(eventsNamed(rows, 'login.failed').length, 1);
      assert.equal(eventsNamed(rows, 'session.created').length, 1);
    });

    test('rejected handshake with code, origin and ip', () => {
      const rejected = eventsNamed(rows, 'handshake.rejected');
      assert.equal(rejected.length, 1);
      assert.equal(rejected[0].fields.code, 'origin_not_allowed');
      assert.equal(rejected[0].fields.origin, 'https://attacker.invalid');
      assert.equal(typeof rejected[0].fields.ip, 'string');
    });

    test('token events by grant type', () => {
      const issued = eventsNamed(rows, 'token.issued').map((row) => row.fields.grant_type).sort();
      assert.deepEqual(issued, ['authorization_code', 'client_credentials', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code']);
      const rotated = eventsNamed(rows, 'refresh_token.rotated');
      assert.equal(rotated.length, 1);
      assert.equal(rotated[0].fields.grant_id, driven.deviceGrantId);
    });

    test('refresh token reuse and its revocation', () => {
      const reused = eventsNamed(rows, 'refresh_token.reused');
      assert.equal(reused.length, 1);
      assert.equal(reused[0].fields.grant_id, driven.deviceGrantId);
      assert.equal(reused[0].fields.client_id, 'meter-1');
      const revoked = eventsNamed(rows, 'grant.revoked');
      assert.equal(revoked.length, 1);
      assert.equal(revoked[0].fields.grant_id, driven.deviceGrantId);
      assert.equal(eventsNamed(rows, 'token.rejected').length, 1);
    });

    test('device events from the commands', () => {
      const added = eventsNamed(rows, 'device.added').map((row) => row.fields.client_id).sort();
      assert.deepEqual(added, ['meter-1', 'sensor-1']);
      const removed = eventsNamed(rows, 'device.removed');
      assert.equal(removed.length, 1);
      assert.equal(removed[0].fields.client_id, 'sensor-1');
      assert.match(String(removed[0].fields.actor), /^cli:/);
      const approved = eventsNamed(rows, 'device_code.approved');
      assert.equal(approved.length, 1);
      assert.equal(approved[0].fields.username, 'alice');
    });

    test('revoked connection closed once', () => {
      const closed = eventsNamed(rows, 'connection.revoked');
      assert.equal(closed.length, 1);
      assert.equal(closed[0].fields.client_id, 'sensor-1');
      assert.equal(closed[0].fields.reason, 'device_removed');
    });

    test('operator events once each', () => {
      for (const event of ['user.added', 'user.disabled', 'user.enabled', 'user.password_changed']) {
        const found = eventsNamed(rows, event);
        assert.equal(found.length, 1, `${event} rows`);
        assert.equal(found[0].fields.username, 'alice', `${event} username`);
      }
      // The server logs `key.rotated` too when it loads the key, but only the command stores it.
      assert.equal(eventsNamed(rows, 'key.rotated').length, 1);
      const revoked = eventsNamed(rows, 'session.revoked');
      assert.equal(revoked.length, 1);
      assert.equal(revoked[0].fields.grant_id, driven.browserGrantId);
      assert.equal(revoked[0].fields.reason, 'operator');
    });

    test('no secret in any row', () => {
      const scanner = new LeakScanner(driven.secrets);
      const leaks = rows.flatMap((row) => scanner.scan(`audit ${backend.name}`, JSON.stringify(row)));
      assert.deepEqual(leaks, []);
      assert.ok(rows.length >= 20, `only ${rows.length} rows were stored`);
    });
  });
}

// A separate server, because its access tokens live two seconds, a throttled login locks the
// account for 15 minutes, and a misused refresh token revokes a second grant.
for (const backend of storeBackends) {
  describe(`audit trail of logout, misuse, throttling and expiry on ${backend.name}`, () => {
    let target: TestStoreLocation;
    let rows: StoredAuditRecord[] = [];
    const secrets = [password, wrongPassword];
    let misusedGrantId = '';

    before(async () => {
      target = await backend.createLocation();
      const server = await startTestServer({ dataDir: target.location.dataDir, databaseUrl: target.location.databaseUrl, accessTokenTtlSeconds: 2, expiryWarningSeconds: 1 });
      try {
        await addUser(server, 'bob', password);
        const session = await scriptedLogin(server, 'bob', password);
        rememberSecret(session.sessionToken);
        rememberSecret(session.csrfToken);
        secrets.push(session.sessionToken, session.csrfToken);
        const logout = await server.fetch(`${server.url}/logout`, { method: 'POST', headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken, origin: server.url } });
        assert.equal(logout.status, 200);

        await addUser(server, 'carol', password);
        rememberSecret(wrongPassword);
        for (let attempt = 0; attempt < 5; attempt += 1) {
          await assert.rejects(scriptedLogin(server, 'carol', wrongPassword), /answered 401/);
        }
        await assert.rejects(scriptedLogin(server, 'carol', wrongPassword), /answered 429/);

        const meter = await addDevice(server, 'meter-2');
        const thief = await addDevice(server, 'thief-1');
        const grant = await approveDevice(server, meter, 'bob');
        const stolen = await redeemRefreshToken(server, thief, grant.refreshToken);
        assert.equal(stolen.status, 400);
        for (const secret of [meter.client_secret, thief.client_secret, grant.accessToken, grant.refreshToken]) {
          rememberSecret(secret);
          secrets.push(secret);
        }
        misusedGrantId = grant.grantId;

        const device = await addDevice(server, 'short-1');
        const accessToken = await deviceToken(server, device);
        rememberSecret(accessToken);
        secrets.push(device.client_secret, accessToken);
        const socket = await openDeviceSocket(server, { clientId: 'short-1', accessToken });
        assert.equal((await socket.waitForClose()).code, 4401);
      } finally {
        await server.close();
      }
      const store = await openStore(target.location);
      try {
        rows = await queryAuditEvents(store, { sinceMs: 0, events: [], limit: 10_000 });
      } finally {
        await store.destroy();
      }
    }, { timeout: 8 * socketWaitMs });
    after(async () => {
      await target?.remove();
    });

    test('logout revokes the session once', () => {
      const revoked = eventsNamed(rows, 'session.revoked');
      assert.equal(revoked.length, 1);
      assert.equal(revoked[0].fields.sub, 'bob');
      assert.equal(revoked[0].fields.reason, 'logout');
      assert.equal(revoked[0].fields.actor, undefined);
    });

    test('five failures then one throttled login', () => {
      const failed = eventsNamed(rows, 'login.failed');
      assert.equal(failed.length, 5);
      assert.ok(failed.every((row) => row.fields.username === 'carol'));
      const throttled = eventsNamed(rows, 'login.throttled');
      assert.equal(throttled.length, 1);
      assert.equal(throttled[0].fields.username, 'carol');
    });

    test('misused refresh token once', () => {
      const misused = eventsNamed(rows, 'refresh_token.misused');
      assert.equal(misused.length, 1);
      assert.equal(misused[0].fields.client_id, 'thief-1');
      assert.equal(misused[0].fields.grant_client_id, 'meter-2');
      assert.equal(misused[0].fields.grant_id, misusedGrantId);
      const rejected = eventsNamed(rows, 'token.rejected');
      assert.equal(rejected.length, 1);
      assert.equal(rejected[0].fields.client_id, 'thief-1');
      assert.equal(rejected[0].fields.error, 'invalid_grant');
    });

    test('expired connection once', () => {
      const expired = eventsNamed(rows, 'connection.expired');
      assert.equal(expired.length, 1);
      assert.equal(expired[0].fields.client_id, 'short-1');
      assert.equal(typeof expired[0].fields.connection_id, 'string');
    });

    test('no secret in any row', () => {
      const scanner = new LeakScanner(secrets);
      const leaks = rows.flatMap((row) => scanner.scan(`audit ${backend.name}`, JSON.stringify(row)));
      assert.deepEqual(leaks, []);
    });
  });
}
