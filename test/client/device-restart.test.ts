// Device SDK clients lose their server to a restart on the same data directory and port. One
// client must get its subscription back. Of 200 clients of one device, every one must reconnect and
// restore its subscription, and their first retry delays must differ because the server spreads its
// reconnect hints. A client must wait the hinted delay and start its backoff again after it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { DeviceClient, type StateChange } from '../../src/client/device.ts';
import { addDevice, startTestServer, type TestServer } from '../support/server.ts';
import { clientOptions, opened, Recorder } from './recorder.ts';

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
    assert.ok(firstRetries.every((change) => change.retryHinted === true), 'a client ignored the reconnect hint');
    const delays = new Set(firstRetries.map((change) => change.retryInMs));
    assert.ok(delays.size > 1, `all ${clientCount} clients waited the same ${[...delays][0]} ms`);
    assert.ok(clients.every((client) => client.state === 'open'));
  });
});

describe('server restart with a reconnect hint', () => {
  // Short, so that the hinted waits are short; no assertion depends on how long anything took.
  const drainWindowMs = 300;
  const servers: TestServer[] = [];

  // The test closes each server before it starts the next, so only the latest may still run.
  after(async () => {
    await servers.at(-1)?.close();
  });

  /** Starts a server; after the first one, on the first one's data directory and port. */
  async function startServer(): Promise<TestServer> {
    const [first] = servers;
    const server = await startTestServer(first ? { dataDir: first.dataDir, port: first.port, drainWindowMs } : { drainWindowMs });
    servers.push(server);
    return server;
  }

  test('hinted delay replaces backoff', async () => {
    const first = await startServer();
    const device = await addDevice(first, 'sdk-hinted');
    const recorder = new Recorder();
    const hints: number[] = [];
    const client = new DeviceClient(clientOptions(first, device.client_id, recorder, {
      credentials: { clientSecret: device.client_secret },
      onFrame: (text) => {
        const frame = JSON.parse(text) as { type: string; after_ms?: number };
        if (frame.type === 'reconnect') {
          hints.push(frame.after_ms!);
        }
      },
      // With random fixed at 0.5, backoff delay n is 250 ms × 2^n, so each delay shows the attempt count.
      backoff: { random: () => 0.5 },
      // No connection counts as stable, so only the hint can reset the backoff.
      stableOpenMs: 3_600_000,
    }));
    const retries = (): StateChange[] => recorder.changes.filter((change) => change.state === 'reconnecting');
    try {
      client.connect();
      await opened(recorder);

      // While no server listens, the attempts after the first hint fail and raise the attempt count.
      await first.close();
      await recorder.until(() => retries().length >= 4, 'three failed attempts after the first hint');
      const second = await startServer();
      await recorder.until(() => recorder.states.filter((state) => state === 'open').length === 2, 'open on the second server');

      const retriesBeforeSecondHint = retries().length;
      await second.close();
      await recorder.until(() => retries().length >= retriesBeforeSecondHint + 2, 'a failed attempt after the second hint');
      await startServer();
      await recorder.until(() => recorder.states.filter((state) => state === 'open').length === 3, 'open on the third server');

      assert.equal(hints.length, 2);
      const afterFirst = retries().slice(0, 4);
      assert.deepEqual(afterFirst[0], { state: 'reconnecting', reason: 'going_away', closeCode: 1001, retryInMs: hints[0], retryHinted: true });
      assert.deepEqual(afterFirst.slice(1).map((change) => [change.reason, change.retryInMs, change.retryHinted]), [
        ['connection_lost', 250, undefined],
        ['connection_lost', 500, undefined],
        ['connection_lost', 1000, undefined],
      ]);
      const afterSecond = retries().slice(retriesBeforeSecondHint);
      assert.deepEqual(afterSecond[0], { state: 'reconnecting', reason: 'going_away', closeCode: 1001, retryInMs: hints[1], retryHinted: true });
      assert.equal(afterSecond[1].reason, 'connection_lost');
      // Without the reset, this delay would be at least 250 ms × 2^3.
      assert.equal(afterSecond[1].retryInMs, 250);
      const hinted = recorder.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.retry_hinted === true);
      assert.deepEqual(hinted.map((line) => line.retry_in_ms), hints);
      assert.equal(recorder.last?.state, 'open');
    } finally {
      await client.close();
    }
  });
});
