import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { decodeJwt } from 'jose';

import { adminStatsChannel } from '../../src/channels/admin-channels.ts';
import { parseChannelFilter } from '../../src/channels/names.ts';
import { mayPublish, mayReceive, maySubscribe, permissionsFromScope } from '../../src/channels/permissions.ts';
import { scriptedLogin, type ScriptedSession } from '../support/browser-login.ts';
import { rememberSecret } from '../support/capture.ts';
import { addDevice, addUser, deviceToken, runServerCli, startTestServer, type TestServer } from '../support/server.ts';
import { openBrowserSocket, openDeviceSocket, type GatewaySocket } from '../support/websocket.ts';

const adminName = 'ada';
const adminPassword = 'an admin channel test password';
const userName = 'uma';
const userPassword = 'a plain channel test password';
const identity = { clientId: 'portcullis-gateway', sub: 'ada' };

let server: TestServer;
let admin: ScriptedSession;
let plainUser: ScriptedSession;
const openSockets: GatewaySocket[] = [];

before(async () => {
  server = await startTestServer();
  rememberSecret(adminPassword);
  const added = await runServerCli(server, ['users', 'add', adminName, '--password-stdin', '--admin'], `${adminPassword}\n`);
  assert.equal(added.code, 0, added.stderr);
  await addUser(server, userName, userPassword);
  admin = await scriptedLogin(server, adminName, adminPassword);
  plainUser = await scriptedLogin(server, userName, userPassword);
});

after(async () => {
  await Promise.all(openSockets.map((socket) => socket.close()));
  await server?.close();
});

function segments(filter: string): string[] {
  return parseChannelFilter(filter)!;
}

test('admin scope counts only in admin sessions', () => {
  const session = permissionsFromScope('subscribe:admin/stats', { ...identity, adminSession: true });
  const device = permissionsFromScope('subscribe:admin/stats publish:admin/#', { clientId: 'meter-1', sub: 'meter-1' });

  assert.equal(maySubscribe(session, segments(adminStatsChannel)), true);
  assert.equal(maySubscribe(device, segments(adminStatsChannel)), false);
  assert.equal(mayPublish(device, segments(adminStatsChannel)), false);
});

test('wide scopes do not reach admin channels', () => {
  const wide = permissionsFromScope('subscribe:# publish:#', identity);
  const withAdmin = permissionsFromScope('subscribe:# subscribe:admin/stats', { ...identity, adminSession: true });

  assert.equal(maySubscribe(wide, segments('admin/stats')), false);
  assert.equal(maySubscribe(wide, segments('admin/#')), false);
  assert.equal(mayPublish(wide, segments('admin/stats')), false);
  assert.equal(maySubscribe(wide, segments('devices/x')), true);
  assert.equal(mayReceive(wide, 'admin/stats'), false);
  assert.equal(mayReceive(wide, 'devices/x'), true);
  assert.equal(mayReceive(withAdmin, 'admin/stats'), true);
});

test('session scope names admin/stats for admins only', async () => {
  const adminScope = String(decodeJwt(admin.sessionToken).scope).split(' ');
  const userScope = String(decodeJwt(plainUser.sessionToken).scope).split(' ');

  assert.ok(adminScope.includes('subscribe:admin/stats'), adminScope.join(' '));
  assert.ok(!userScope.includes('subscribe:admin/stats'), userScope.join(' '));
});

test('admin socket receives live counts', async () => {
  const socket = await openBrowserSocket(server, admin);
  openSockets.push(socket);

  const reply = await socket.request({ type: 'subscribe', channel: adminStatsChannel });
  const message = await socket.nextFrameWhere((frame) => frame.type === 'message' && frame.channel === adminStatsChannel, 'an admin/stats message');

  assert.equal(reply.type, 'subscribed');
  const data = message.data as { time: number; browser: number; device: number };
  assert.equal(typeof data.time, 'number');
  assert.ok(data.browser >= 1, `browser count ${data.browser}`);
  assert.equal(typeof data.device, 'number');
});

test('non-admin cannot subscribe to admin/stats', async () => {
  const socket = await openBrowserSocket(server, plainUser);
  openSockets.push(socket);

  const reply = await socket.request({ type: 'subscribe', channel: adminStatsChannel });

  assert.equal(reply.type, 'error');
  assert.equal(reply.code, 'forbidden');
});

test('device subscribed to # gets no admin/stats', async () => {
  const credentials = await addDevice(server, 'wide-listener', ['--scope', 'subscribe:#']);
  const device = await openDeviceSocket(server, { clientId: 'wide-listener', accessToken: await deviceToken(server, credentials) });
  openSockets.push(device);
  const watcher = await openBrowserSocket(server, admin);
  openSockets.push(watcher);
  assert.equal((await device.request({ type: 'subscribe', channel: '#' })).type, 'subscribed');
  assert.equal((await watcher.request({ type: 'subscribe', channel: adminStatsChannel })).type, 'subscribed');

  // One broker publish reaches every subscriber before the next, so after the watcher's next
  // admin/stats message the device has received it too, if it ever would.
  await watcher.nextFrameWhere((frame) => frame.type === 'message' && frame.channel === adminStatsChannel, 'an admin/stats message');
  server.running.publish('devices/wide-listener/probe', { probe: true });
  await device.nextFrameWhere((frame) => frame.type === 'message' && frame.channel === 'devices/wide-listener/probe', 'the probe message');

  assert.ok(!device.received.some((text) => text.includes('"admin/stats"')), 'the device received an admin/stats message');
});

test('devices cannot register admin scopes', async () => {
  const result = await runServerCli(server, ['devices', 'add', 'admin-spy', '--scope', 'subscribe:admin/stats']);

  assert.equal(result.code, 2);
  assert.match(result.stderr, /admin\/ channels/);
});
