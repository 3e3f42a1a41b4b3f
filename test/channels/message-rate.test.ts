// The per-connection token bucket, driven by a hand-moved clock so every decision is deterministic.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MessageRateLimiter } from '../../src/channels/message-rate.ts';

function limiterAt(ratePerSecond: number) {
  const clock = { now: 1_000_000 };
  return { clock, limiter: new MessageRateLimiter(ratePerSecond, () => clock.now) };
}

function takeMany(limiter: MessageRateLimiter, count: number): string[] {
  return Array.from({ length: count }, () => limiter.take());
}

test('a full bucket allows a burst of the rate, then refuses', () => {
  const { limiter } = limiterAt(5);
  assert.deepEqual(takeMany(limiter, 7), ['allow', 'allow', 'allow', 'allow', 'allow', 'refuse', 'refuse']);
});

test('tokens refill with time, up to the burst size', () => {
  const { clock, limiter } = limiterAt(5);
  takeMany(limiter, 5);
  clock.now += 400;
  assert.deepEqual(takeMany(limiter, 3), ['allow', 'allow', 'refuse']);

  clock.now += 60_000;
  assert.equal(takeMany(limiter, 6).filter((decision) => decision === 'allow').length, 5);
});

test('a client at the rate is never refused', () => {
  const { clock, limiter } = limiterAt(10);
  for (let second = 0; second < 30; second += 1) {
    clock.now += 1000;
    assert.ok(takeMany(limiter, 10).every((decision) => decision === 'allow'));
  }
});

test('sustained flooding turns refusals into abuse', () => {
  const { limiter } = limiterAt(5);
  const decisions = takeMany(limiter, 5 + 5 * 5 + 1);
  assert.equal(decisions.at(-2), 'refuse');
  assert.equal(decisions.at(-1), 'abuse');
});

test('the abuse score drains, so an occasional burst never closes', () => {
  const { clock, limiter } = limiterAt(5);
  for (let round = 0; round < 50; round += 1) {
    const decisions = takeMany(limiter, 15);
    assert.ok(!decisions.includes('abuse'), `round ${round} reached abuse`);
    clock.now += 3000;
  }
});
