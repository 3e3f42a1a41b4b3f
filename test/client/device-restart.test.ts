// 200 device SDK clients of one device lose their server to a restart on the same data directory
// and port. Every one must reconnect, and their first retry delays must differ (full jitter).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { DeviceClient } from '../../src/client/device.ts';
import { addDevice, startTestServer, type TestServer } from '../support/server.ts';
import { clientOptions, Recorder } from './recorder.ts';

describe('server restart with 200 clients', () => {
  const clientCount = 200;
  // Each client makes its own discovery, token and upgrade requests: about 12 s for 200 on 2 cores.
  const fleetLimitMs = 180_000;
  let first: TestServer;
  let second: TestServer | undefined;
  const recorders: Recorder[] = [];
  const clients: DeviceClient[] = [];

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

  test('all reconnect, at spread times', async () => {
    clients.forEach((client) => client.connect());
    await Promise.all(recorders.map((recorder) => recorder.until(() => recorder.last?.state === 'open', 'first open', fleetLimitMs)));

    await first.close();
    second = await startTestServer({ dataDir: first.dataDir, port: first.port, logLevel: 'warn' });
    await Promise.all(recorders.map((recorder) => recorder.until(() => recorder.states.filter((state) => state === 'open').length === 2 && recorder.last?.state === 'open', 'reopen', fleetLimitMs)));

    const firstRetries = recorders.map((recorder) => recorder.changes.find((change) => change.state === 'reconnecting')!);
    assert.ok(firstRetries.every((change) => change.reason === 'going_away' && change.closeCode === 1001), 'a client left for another reason than 1001');
    const delays = new Set(firstRetries.map((change) => change.retryInMs));
    assert.ok(delays.size > 1, `all ${clientCount} clients waited the same ${[...delays][0]} ms`);
    assert.ok(clients.every((client) => client.state === 'open'));
  });
});
