// Device SDK clients lose their server to a restart on the same data directory and port. One
// client must get its subscription back. Of 200 clients of one device, every one must reconnect and
// restore its subscription, and their first retry delays must differ because of full jitter.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { DeviceClient } from '../../src/client/device.ts';
import { addDevice, startTestServer, type TestServer } from '../support/server.ts';
import { clientOptions, Recorder } from './recorder.ts';

describe('server restart with a subscription', () => {
  let first: TestServer;
  let second: TestServer | undefined;

  before(async () => {
    first = await startTestServer();
  });

  after(async () => {
    await second?.close();
    await first.close();
  });

  test('subscription restored after restart', async () => {
    const device = await addDevice(first, 'sdk-restore');
    const commands = `devices/${device.client_id}/commands`;
    const recorder = new Recorder();
    const client = new DeviceClient(clientOptions(first, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } }));
    try {
      client.connect();
      await client.subscribe(commands);
      assert.equal(first.running.publish(commands, { sequence: 1 }), 1);
      await recorder.until(() => recorder.messages.length === 1, 'message before the restart');

      await first.close();
      second = await startTestServer({ dataDir: first.dataDir, port: first.port });
      await recorder.until(() => recorder.subscribed.length === 2, 'restored subscription');
      assert.equal(second.running.publish(commands, { sequence: 2 }), 1);
      await recorder.until(() => recorder.messages.length === 2, 'message after the restart');

      assert.deepEqual(recorder.subscribed, [{ channel: commands, restored: false }, { channel: commands, restored: true }]);
      assert.deepEqual(recorder.messages.map((message) => message.data), [{ sequence: 1 }, { sequence: 2 }]);
      assert.deepEqual(recorder.ended, []);
      assert.equal(recorder.changes.find((change) => change.state === 'reconnecting')?.reason, 'going_away');
      assert.equal(recorder.last?.state, 'open');
      assert.deepEqual(client.subscriptions, [commands]);
    } finally {
      await client.close();
    }
  });
});

describe('server restart with 200 clients', () => {
  const clientCount = 200;
  // Each client makes its own discovery, token and upgrade requests: about 12 s for 200 on 2 cores.
  const fleetLimitMs = 180_000;
  let first: TestServer;
  let second: TestServer | undefined;
  const recorders: Recorder[] = [];
  const clients: DeviceClient[] = [];
  const commands = 'devices/sdk-fleet/commands';

  before(async () => {
    first = await startTestServer({ logLevel: 'warn' });
    const device = await addDevice(first, 'sdk-fleet');
    for (let index = 0; index < clientCount; index += 1) {
      const recorder = new Recorder();
      recorders.push(recorder);
      clients.push(new DeviceClient(clientOptions(first, device.client_id, recorder, { credentials: { clientSecret: device.client_secret } })));
    }
  });

  after(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await second?.close();
  });

  test('all reconnect and resubscribe, at spread times', async () => {
    clients.forEach((client) => client.connect());
    await Promise.all(recorders.map((recorder) => recorder.until(() => recorder.last?.state === 'open', 'first open', fleetLimitMs)));
    await Promise.all(clients.map((client) => client.subscribe(commands)));

    await first.close();
    second = await startTestServer({ dataDir: first.dataDir, port: first.port, logLevel: 'warn' });
    await Promise.all(recorders.map((recorder) => recorder.until(() => recorder.states.filter((state) => state === 'open').length === 2 && recorder.last?.state === 'open', 'reopen', fleetLimitMs)));
    await Promise.all(recorders.map((recorder) => recorder.until(() => recorder.subscribed.some((event) => event.restored), 'restored subscription', fleetLimitMs)));
    assert.equal(second.running.publish(commands, { action: 'report' }), clientCount);
    await Promise.all(recorders.map((recorder) => recorder.until(() => recorder.messages.length === 1, 'command after the restart', fleetLimitMs)));

    const firstRetries = recorders.map((recorder) => recorder.changes.find((change) => change.state === 'reconnecting')!);
    assert.ok(firstRetries.every((change) => change.reason === 'going_away' && change.closeCode === 1001), 'a client left for another reason than 1001');
    const delays = new Set(firstRetries.map((change) => change.retryInMs));
    assert.ok(delays.size > 1, `all ${clientCount} clients waited the same ${[...delays][0]} ms`);
    assert.ok(clients.every((client) => client.state === 'open'));
  });
});
