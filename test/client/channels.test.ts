// The channel request state of one client, driven frame by frame with frames as portcullis.v1
// defines them. The device and browser tests run the same code against a real server. The cases
// here need what a real server does not do on demand: a reply that never comes, a connection lost
// between a request and its reply, or a clock.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';

import { ChannelRequests, type ChannelMessage, type ChannelOptions, type SubscribedEvent, type SubscriptionEndedEvent } from '../../src/client/channels.ts';
import type { PortcullisClientError } from '../../src/client/policy.ts';

/** A `ChannelRequests` with everything it reports recorded, and the frames of its current connection. */
class Harness {
  readonly channels: ChannelRequests;
  readonly messages: ChannelMessage[] = [];
  readonly subscribed: SubscribedEvent[] = [];
  readonly ended: SubscriptionEndedEvent[] = [];
  readonly errors: string[] = [];
  sent: Array<Record<string, unknown>> = [];

  constructor(options: ChannelOptions = {}) {
    this.channels = new ChannelRequests({
      onMessage: (message) => this.messages.push(message),
      onSubscribed: (event) => this.subscribed.push(event),
      onSubscriptionEnded: (event) => this.ended.push(event),
      onError: (error) => this.errors.push(error.code),
      ...options,
    }, (callback) => callback());
  }

  /** Starts a new connection; `sent` then holds only its frames. */
  connect(): void {
    this.sent = [];
    this.channels.connected((text) => this.sent.push(JSON.parse(text) as Record<string, unknown>));
  }

  reply(frame: Record<string, unknown>): void {
    assert.equal(this.channels.receive(frame), true, `the frame ${JSON.stringify(frame)} was not handled`);
  }
}

/** Resolves to `resolved` or the rejection's code once the promise settles. */
function outcome(promise: Promise<void>): Promise<string> {
  return promise.then(() => 'resolved', (error: PortcullisClientError) => error.code);
}

/** Lets promise callbacks run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function useFakeClock(context: TestContext): void {
  context.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
}

test('ids restart and subscriptions return', async () => {
  const harness = new Harness();
  const subscribed = outcome(harness.channels.subscribe('devices/a/commands'));
  harness.connect();
  assert.deepEqual(harness.sent, [{ type: 'subscribe', id: 1, channel: 'devices/a/commands' }]);
  harness.reply({ type: 'subscribed', id: 1, channel: 'devices/a/commands' });
  assert.equal(await subscribed, 'resolved');
  const published = outcome(harness.channels.publish('devices/a/telemetry', { n: 1 }));
  harness.reply({ type: 'published', id: 2, channel: 'devices/a/telemetry' });
  assert.equal(await published, 'resolved');

  harness.channels.disconnected();
  harness.connect();
  harness.reply({ type: 'subscribed', id: 1, channel: 'devices/a/commands' });

  assert.deepEqual(harness.sent, [{ type: 'subscribe', id: 1, channel: 'devices/a/commands' }]);
  assert.deepEqual(harness.subscribed, [{ channel: 'devices/a/commands', restored: false }, { channel: 'devices/a/commands', restored: true }]);
  assert.deepEqual(harness.channels.subscriptions, ['devices/a/commands']);
});

test('lost connection settles requests', async () => {
  const harness = new Harness();
  harness.connect();
  const publish = outcome(harness.channels.publish('a/b', 1));
  const subscribe = harness.channels.subscribe('a/c');
  const confirm = outcome(harness.channels.subscribe('a/d'));
  harness.reply({ type: 'subscribed', id: 3, channel: 'a/d' });
  assert.equal(await confirm, 'resolved');
  const unsubscribe = outcome(harness.channels.unsubscribe('a/d'));

  harness.channels.disconnected();
  // The publish may or may not have arrived, so it is not repeated. The subscribe waits for the next connection.
  assert.equal(await publish, 'connection_closed');
  assert.equal(await unsubscribe, 'resolved');
  harness.connect();
  harness.reply({ type: 'subscribed', id: 1, channel: 'a/c' });
  await subscribe;

  assert.deepEqual(harness.sent, [{ type: 'subscribe', id: 1, channel: 'a/c' }]);
  assert.deepEqual(harness.channels.subscriptions, ['a/c']);
});

test('requests wait for the next connection', async () => {
  const harness = new Harness();
  harness.connect();
  const first = outcome(harness.channels.subscribe('a/#'));
  harness.reply({ type: 'subscribed', id: 1, channel: 'a/#' });
  assert.equal(await first, 'resolved');
  harness.channels.disconnected();

  const published = outcome(harness.channels.publish('a/b', 'queued'));
  const unsubscribed = outcome(harness.channels.unsubscribe('x/y'));
  harness.connect();

  assert.equal(await unsubscribed, 'resolved');
  // Restored subscriptions go first, so a queued publish to a subscribed channel comes back.
  assert.deepEqual(harness.sent, [
    { type: 'subscribe', id: 1, channel: 'a/#' },
    { type: 'publish', id: 2, channel: 'a/b', data: 'queued' },
  ]);
  harness.reply({ type: 'published', id: 2, channel: 'a/b' });
  assert.equal(await published, 'resolved');
});

test('forbidden restore ends subscription', async () => {
  const harness = new Harness();
  harness.connect();
  const subscribed = outcome(harness.channels.subscribe('devices/lamp/#'));
  harness.reply({ type: 'subscribed', id: 1, channel: 'devices/lamp/#' });
  assert.equal(await subscribed, 'resolved');

  harness.channels.disconnected();
  harness.connect();
  harness.reply({ type: 'error', id: 1, code: 'forbidden', description: 'The token does not grant this action on this channel.' });

  assert.deepEqual(harness.ended, [{ channel: 'devices/lamp/#', code: 'forbidden' }]);
  assert.deepEqual(harness.channels.subscriptions, []);
  assert.deepEqual(harness.errors, []);
});

test('refused subscribe only rejects', async () => {
  const harness = new Harness();
  harness.connect();
  const subscribed = outcome(harness.channels.subscribe('devices/other/#'));
  harness.reply({ type: 'error', id: 1, code: 'forbidden', description: '' });

  assert.equal(await subscribed, 'forbidden');
  assert.deepEqual(harness.ended, [], 'a subscription that never started was reported as ended');
  assert.deepEqual(harness.channels.subscriptions, []);
});

test('server-ended subscription stops callbacks', async () => {
  const harness = new Harness();
  const received: string[] = [];
  harness.connect();
  const subscribed = harness.channels.subscribe('devices/lamp/#', (message) => received.push(message.channel));
  harness.reply({ type: 'subscribed', id: 1, channel: 'devices/lamp/#' });
  await subscribed;

  harness.reply({ type: 'unsubscribed', id: null, channel: 'devices/lamp/#', reason: 'forbidden' });
  harness.reply({ type: 'message', channel: 'devices/lamp/state', data: 1, publisher: { client_id: 'lamp', sub: 'lamp' }, timestamp: 1 });

  assert.deepEqual(harness.ended, [{ channel: 'devices/lamp/#', code: 'forbidden' }]);
  assert.deepEqual(received, []);
  assert.equal(harness.messages.length, 1, 'onMessage still receives what the server sends');
});

test('message reaches matching callbacks', async () => {
  const harness = new Harness();
  const received: string[] = [];
  harness.connect();
  const filters = ['devices/*/telemetry', 'devices/#', 'devices/a', 'users/a/#'];
  const confirmed = filters.map((filter) => harness.channels.subscribe(filter, () => received.push(filter)));
  filters.forEach((filter, index) => harness.reply({ type: 'subscribed', id: index + 1, channel: filter }));
  await Promise.all(confirmed);

  harness.reply({ type: 'message', channel: 'devices/a/telemetry', data: { celsius: 20 }, publisher: { client_id: 'a', sub: 'a' }, timestamp: 9 });

  assert.deepEqual(received, ['devices/*/telemetry', 'devices/#']);
  assert.deepEqual(harness.messages, [{ channel: 'devices/a/telemetry', data: { celsius: 20 }, publisher: { clientId: 'a', sub: 'a' }, timestamp: 9 }]);
});

test('unsubscribe during subscribe', async () => {
  const harness = new Harness();
  harness.connect();
  const subscribed = outcome(harness.channels.subscribe('a/b'));
  const unsubscribed = outcome(harness.channels.unsubscribe('a/b'));
  assert.equal(await subscribed, 'unsubscribed');

  harness.reply({ type: 'subscribed', id: 1, channel: 'a/b' });
  harness.reply({ type: 'unsubscribed', id: 2, channel: 'a/b' });

  assert.equal(await unsubscribed, 'resolved');
  assert.deepEqual(harness.sent.map((frame) => frame.type), ['subscribe', 'unsubscribe']);
  assert.deepEqual(harness.subscribed, [], 'the late confirmation was reported');
});

test('timed-out subscribe is undone', async (context) => {
  useFakeClock(context);
  const harness = new Harness({ requestTimeoutMs: 1000 });
  harness.connect();
  const subscribed = outcome(harness.channels.subscribe('a/b'));

  context.mock.timers.tick(1000);
  assert.equal(await subscribed, 'request_timeout');
  harness.reply({ type: 'subscribed', id: 1, channel: 'a/b' });

  // The server may have subscribed after all, so an unsubscribe follows.
  assert.deepEqual(harness.sent, [{ type: 'subscribe', id: 1, channel: 'a/b' }, { type: 'unsubscribe', id: 2, channel: 'a/b' }]);
  assert.deepEqual(harness.channels.subscriptions, []);
  assert.deepEqual(harness.subscribed, []);
});

test('timed-out publish ignores late reply', async (context) => {
  useFakeClock(context);
  const harness = new Harness({ requestTimeoutMs: 1000 });
  const queued = outcome(harness.channels.publish('a/b', 1));
  context.mock.timers.tick(1000);
  assert.equal(await queued, 'request_timeout');

  harness.connect();
  assert.deepEqual(harness.sent, [], 'a timed-out request was still sent');
  const sent = outcome(harness.channels.publish('a/b', 2));
  context.mock.timers.tick(1000);
  harness.reply({ type: 'published', id: 1, channel: 'a/b' });

  assert.equal(await sent, 'request_timeout');
});

test('unclaimed error reaches onError', () => {
  const harness = new Harness();
  harness.connect();
  harness.reply({ type: 'error', id: null, code: 'rate_limited', description: 'Too many requests or messages; slow down and retry later.' });
  harness.reply({ type: 'error', id: 99, code: 'forbidden', description: '' });

  assert.deepEqual(harness.errors, ['rate_limited', 'forbidden']);
});

test('pacer spreads a burst', async (context) => {
  useFakeClock(context);
  const harness = new Harness({ maxMessagesPerSecond: 4 });
  harness.connect();
  const published = Array.from({ length: 5 }, (_, index) => harness.channels.publish('a/b', index));
  assert.deepEqual(harness.sent.map((frame) => frame.data), [0, 1]);

  context.mock.timers.tick(250);
  assert.deepEqual(harness.sent.map((frame) => frame.data), [0, 1, 2]);
  context.mock.timers.tick(500);
  assert.deepEqual(harness.sent.map((frame) => frame.data), [0, 1, 2, 3, 4]);
  assert.deepEqual(harness.sent.map((frame) => frame.id), [1, 2, 3, 4, 5]);

  harness.sent.forEach((frame) => harness.reply({ type: 'published', id: frame.id, channel: 'a/b' }));
  await Promise.all(published);
});

test('auth frame goes first', async (context) => {
  useFakeClock(context);
  const harness = new Harness({ maxMessagesPerSecond: 2 });
  harness.connect();
  const published = [harness.channels.publish('a/b', 1), harness.channels.publish('a/b', 2)].map(outcome);
  harness.channels.sendControl('{"type":"auth","token":"t"}');

  context.mock.timers.tick(500);
  assert.deepEqual(harness.sent.map((frame) => frame.type), ['publish', 'auth']);
  context.mock.timers.tick(500);
  assert.deepEqual(harness.sent.map((frame) => frame.type), ['publish', 'auth', 'publish']);
  harness.channels.stop(true);
  assert.deepEqual(await Promise.all(published), ['connection_closed', 'connection_closed']);
});

test('stop keeps confirmed subscriptions', async () => {
  const harness = new Harness();
  harness.connect();
  const confirmed = harness.channels.subscribe('a/b');
  harness.reply({ type: 'subscribed', id: 1, channel: 'a/b' });
  await confirmed;
  const waiting = outcome(harness.channels.subscribe('a/c'));

  harness.channels.stop(false);
  assert.equal(await waiting, 'not_connected');
  assert.equal(await outcome(harness.channels.publish('a/b', 1)), 'not_connected');
  assert.deepEqual(harness.channels.subscriptions, ['a/b']);

  harness.channels.resume();
  harness.connect();
  assert.deepEqual(harness.sent, [{ type: 'subscribe', id: 1, channel: 'a/b' }]);
  harness.channels.stop(true);
  assert.deepEqual(harness.channels.subscriptions, []);
  await settle();
});
