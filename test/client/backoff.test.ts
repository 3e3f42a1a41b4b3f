import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Backoff, backoffCeilingMs, nextRetry } from '../../src/client/backoff.ts';

/** A `random` that returns the given values in turn. */
function sequence(...values: number[]): () => number {
  let index = 0;
  return () => values[index++ % values.length];
}

test('ceiling doubles from base up to cap', () => {
  const ceilings = Array.from({ length: 10 }, (_, attempt) => backoffCeilingMs(attempt));
  assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000]);
});

test('ceiling stays finite for huge attempts', () => {
  assert.equal(backoffCeilingMs(10_000), 30_000);
  assert.equal(backoffCeilingMs(Number.MAX_SAFE_INTEGER, 1, 2 ** 40), 2 ** 31);
});

test('delay is random times ceiling', () => {
  const backoff = new Backoff({ random: sequence(0.5, 0.25, 0.999, 0) });
  assert.deepEqual([backoff.next(), backoff.next(), backoff.next(), backoff.next()], [250, 250, 1998, 0]);
  assert.equal(backoff.attempts, 4);
});

test('delay never reaches the ceiling', () => {
  const backoff = new Backoff({ random: () => 0.9999999 });
  for (let attempt = 0; attempt < 12; attempt += 1) {
    const ceiling = backoffCeilingMs(attempt);
    const delay = backoff.next();
    assert.ok(delay < ceiling, `attempt ${attempt}: ${delay} is not below ${ceiling}`);
    assert.ok(delay >= 0);
  }
});

test('reset starts from base again', () => {
  const backoff = new Backoff({ random: () => 0.5 });
  for (let attempt = 0; attempt < 8; attempt += 1) {
    backoff.next();
  }
  assert.equal(backoff.next(), 15_000);

  backoff.reset();
  assert.equal(backoff.attempts, 0);
  assert.equal(backoff.next(), 250);
});

test('custom base and cap', () => {
  const backoff = new Backoff({ baseMs: 100, capMs: 350, random: () => 0.5 });
  assert.deepEqual([backoff.next(), backoff.next(), backoff.next(), backoff.next()], [50, 100, 175, 175]);
});

test('default random spreads delays', () => {
  const delays = new Set(Array.from({ length: 50 }, () => new Backoff().next()));
  assert.ok(delays.size > 1, 'fifty first delays were all equal');
  assert.ok([...delays].every((delay) => delay >= 0 && delay < 500));
});

test('reconnect hint replaces backoff delay', () => {
  const backoff = new Backoff({ random: () => 0.5 });
  backoff.next();
  backoff.next();

  assert.deepEqual(nextRetry(backoff, 4211), { retryInMs: 4211, retryHinted: true });
  assert.equal(backoff.attempts, 0, 'the hint did not reset the attempt count');
  assert.deepEqual(nextRetry(backoff, null), { retryInMs: 250 });
  assert.equal(backoff.attempts, 1);
});

test('zero hint is still a hint', () => {
  assert.deepEqual(nextRetry(new Backoff({ random: () => 0.5 }), 0, 7000), { retryInMs: 0, retryHinted: true });
});

test('without hint retry-after is a floor', () => {
  const backoff = new Backoff({ random: () => 0.5 });
  assert.deepEqual(nextRetry(backoff, null, 7000), { retryInMs: 7000 });
  assert.deepEqual(nextRetry(backoff, null, 10), { retryInMs: 500 });
});

for (const [name, options] of [
  ['zero base', { baseMs: 0 }],
  ['cap below base', { baseMs: 1000, capMs: 10 }],
  ['NaN base', { baseMs: Number.NaN }],
] as const) {
  test(`${name} is refused`, () => {
    assert.throws(() => new Backoff(options), RangeError);
  });
}
