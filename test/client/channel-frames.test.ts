import assert from 'node:assert/strict';
import { test } from 'node:test';

import { channelError, checkChannelFilter, checkChannelName, readChannelFrame, SendPacer, serialiseData } from '../../src/client/channel-frames.ts';

const frameCases: Array<[what: string, frame: Record<string, unknown>, expected: unknown]> = [
  ['subscribed reply', { type: 'subscribed', id: 3, channel: 'a/b' }, { type: 'subscribed', id: 3, channel: 'a/b' }],
  ['published reply', { type: 'published', id: 0, channel: 'a' }, { type: 'published', id: 0, channel: 'a' }],
  ['unsubscribed reply', { type: 'unsubscribed', id: 7, channel: 'a/#' }, { type: 'unsubscribed', id: 7, channel: 'a/#' }],
  ['subscription ended by the server', { type: 'unsubscribed', id: null, channel: 'a/#', reason: 'forbidden' }, { type: 'subscription_ended', channel: 'a/#', reason: 'forbidden' }],
  ['error with id', { type: 'error', id: 4, code: 'forbidden', description: 'No.' }, { type: 'error', id: 4, code: 'forbidden', description: 'No.' }],
  ['error without id', { type: 'error', id: null, code: 'rate_limited' }, { type: 'error', id: null, code: 'rate_limited', description: '' }],
  ['error with a string id', { type: 'error', id: 'x', code: 'invalid_id' }, { type: 'error', id: null, code: 'invalid_id', description: '' }],
  [
    'message',
    { type: 'message', channel: 'a/b', data: { n: 1 }, publisher: { client_id: 'c', sub: 's' }, timestamp: 5 },
    { type: 'message', message: { channel: 'a/b', data: { n: 1 }, publisher: { clientId: 'c', sub: 's' }, timestamp: 5 } },
  ],
  ['reply with a string id', { type: 'subscribed', id: 'x', channel: 'a' }, null],
  ['reply with a negative id', { type: 'published', id: -1, channel: 'a' }, null],
  ['reply without channel', { type: 'subscribed', id: 1 }, null],
  ['message without publisher', { type: 'message', channel: 'a', data: 1, timestamp: 5 }, null],
  ['message without timestamp', { type: 'message', channel: 'a', data: 1, publisher: {} }, null],
  ['control frame', { type: 'welcome', connection_id: 'c', expires_at: 1 }, null],
  ['unknown type', { type: 'presence', id: 1, channel: 'a' }, null],
];

for (const [what, frame, expected] of frameCases) {
  test(`reads ${what}`, () => {
    assert.deepEqual(readChannelFrame(frame), expected);
  });
}

test('error names action, channel and code', () => {
  const error = channelError('forbidden', 'subscribe', 'devices/x/#', 'The token does not grant this action on this channel.');

  assert.equal(error.name, 'PortcullisClientError');
  assert.equal(error.code, 'forbidden');
  assert.equal(error.retryable, false);
  assert.equal(error.message, 'subscribe "devices/x/#" failed with forbidden: The token does not grant this action on this channel.');
});

test('transient codes are retryable', () => {
  for (const code of ['rate_limited', 'request_timeout', 'connection_closed']) {
    assert.equal(channelError(code, 'publish', 'a', '').retryable, true, code);
  }
  for (const code of ['forbidden', 'invalid_channel', 'not_connected', 'too_many_subscriptions']) {
    assert.equal(channelError(code, 'publish', 'a', '').retryable, false, code);
  }
});

test('filters follow the server rules', () => {
  for (const valid of ['devices/sensor-1/#', 'devices/*/telemetry', '#', 'a/b/c/d/e/f/g/h']) {
    assert.equal(checkChannelFilter('subscribe', valid), null, valid);
  }
  for (const invalid of ['', 'Devices/x', 'devices/#/x', 'a//b', 'a/b/c/d/e/f/g/h/i', 'x'.repeat(201), 'devices/sensor.1']) {
    assert.equal(checkChannelFilter('subscribe', invalid)?.code, 'invalid_channel', invalid);
  }
});

test('publish channels take no wildcard', () => {
  assert.equal(checkChannelName('devices/sensor-1/telemetry'), null);
  assert.equal(checkChannelName('devices/*/telemetry')?.code, 'invalid_channel');
  assert.equal(checkChannelName('devices/#')?.code, 'invalid_channel');
});

test('data must be a JSON value', () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;

  assert.equal(serialiseData({ n: 1, list: [null, 'x'] }), '{"n":1,"list":[null,"x"]}');
  assert.equal(serialiseData(null), 'null');
  assert.equal(serialiseData(undefined), null);
  assert.equal(serialiseData(() => 1), null);
  assert.equal(serialiseData(10n), null);
  assert.equal(serialiseData(cyclic), null);
});

test('pacer allows half a second of burst', () => {
  let now = 0;
  const pacer = new SendPacer(10, () => now);
  const burst = Array.from({ length: 5 }, () => pacer.take());

  assert.deepEqual(burst, [0, 0, 0, 0, 0]);
  assert.equal(pacer.take(), 100);
  now = 100;
  assert.equal(pacer.take(), 0);
  assert.equal(pacer.take(), 100);
});

test('pacer refills no further than burst', () => {
  let now = 0;
  const pacer = new SendPacer(4, () => now);
  now = 60_000;
  const takes = Array.from({ length: 3 }, () => pacer.take());

  assert.deepEqual(takes, [0, 0, 250]);
});

test('pacer rejects a rate that is not positive', () => {
  assert.throws(() => new SendPacer(0), RangeError);
  assert.throws(() => new SendPacer(Number.POSITIVE_INFINITY), RangeError);
  assert.throws(() => new SendPacer(Number.NaN), RangeError);
});
