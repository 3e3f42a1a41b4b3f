import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { LoginThrottle, type LoginThrottleOptions } from '../../src/auth/login-throttle.ts';

const minute = 60_000;

function setup(options: LoginThrottleOptions = {}) {
  const clock = { now: 1_700_000_000_000 };
  const throttle = new LoginThrottle({ now: () => clock.now, ...options });

  return { clock, throttle };
}

function failTimes(throttle: LoginThrottle, count: number, attempt: { username: string; ip: string }) {
  for (let i = 0; i < count; i += 1) {
    throttle.recordFailure(attempt);
  }
}

describe('LoginThrottle', () => {
  test('allows a fresh account and IP', () => {
    const { throttle } = setup();

    assert.deepEqual(throttle.check({ username: 'alice', ip: '192.0.2.1' }), { allowed: true });
  });

  test('blocks sixth attempt per account', () => {
    const { throttle } = setup();
    const attempt = { username: 'alice', ip: '192.0.2.1' };

    failTimes(throttle, 4, attempt);
    assert.deepEqual(throttle.check(attempt), { allowed: true });

    throttle.recordFailure(attempt);

    assert.deepEqual(throttle.check(attempt), { allowed: false, retryAfterSeconds: 900 });
  });

  test('account lock holds only at its IP', () => {
    const { throttle } = setup();

    failTimes(throttle, 5, { username: 'alice', ip: '192.0.2.1' });

    assert.equal(throttle.check({ username: 'alice', ip: '192.0.2.1' }).allowed, false);
    assert.equal(throttle.check({ username: 'alice', ip: '198.51.100.7' }).allowed, true);
    assert.equal(throttle.check({ username: 'bob', ip: '192.0.2.1' }).allowed, true);
  });

  test('crafted username cannot lock a pair', () => {
    const { throttle } = setup();

    // Under the old key format this username's account key equalled the key of (alice, 192.0.2.9).
    failTimes(throttle, 5, { username: 'alice ip:192.0.2.9', ip: '198.51.100.7' });
    failTimes(throttle, 5, { username: 'alice", "192.0.2.9', ip: '198.51.100.8' });

    assert.deepEqual(throttle.check({ username: 'alice', ip: '192.0.2.9' }), { allowed: true });
    assert.deepEqual(throttle.reserve({ username: 'alice', ip: '192.0.2.9' }), { allowed: true });
  });

  test('account locks everywhere after 100 failures', () => {
    const { throttle } = setup();

    for (let i = 0; i < 99; i += 1) {
      throttle.recordFailure({ username: 'alice', ip: `192.0.2.${i}` });
    }
    assert.equal(throttle.check({ username: 'alice', ip: '198.51.100.7' }).allowed, true);

    throttle.recordFailure({ username: 'alice', ip: '192.0.2.99' });

    assert.deepEqual(throttle.check({ username: 'alice', ip: '198.51.100.7' }), { allowed: false, retryAfterSeconds: 900 });
    assert.equal(throttle.check({ username: 'bob', ip: '192.0.2.1' }).allowed, true);
  });

  test('usernames are case-folded', () => {
    const { throttle } = setup({ maxFailuresPerAccount: 5 });

    failTimes(throttle, 5, { username: 'Alice', ip: '192.0.2.1' });

    assert.equal(throttle.check({ username: 'ALICE', ip: '192.0.2.1' }).allowed, false);
    assert.equal(throttle.check({ username: 'ALICE', ip: '198.51.100.7' }).allowed, false);
  });

  test('blocks IP after 20 failures', () => {
    const { throttle } = setup();
    const ip = '192.0.2.1';

    for (let i = 0; i < 19; i += 1) {
      throttle.recordFailure({ username: `user${i}`, ip });
    }
    assert.equal(throttle.check({ username: 'fresh', ip }).allowed, true);

    throttle.recordFailure({ username: 'user19', ip });

    assert.deepEqual(throttle.check({ username: 'fresh', ip }), { allowed: false, retryAfterSeconds: 900 });
    assert.equal(throttle.check({ username: 'fresh', ip: '198.51.100.7' }).allowed, true);
  });

  test('frees account after lockout', () => {
    const { clock, throttle } = setup();
    const attempt = { username: 'alice', ip: '192.0.2.1' };
    failTimes(throttle, 5, attempt);

    clock.now += 15 * minute - 1_500;
    assert.deepEqual(throttle.check(attempt), { allowed: false, retryAfterSeconds: 2 });

    clock.now += 1_500;
    assert.deepEqual(throttle.check(attempt), { allowed: true });
  });

  test('count restarts after lockout', () => {
    const { clock, throttle } = setup();
    const attempt = { username: 'alice', ip: '192.0.2.1' };
    failTimes(throttle, 5, attempt);
    clock.now += 15 * minute;

    failTimes(throttle, 4, attempt);

    assert.equal(throttle.check(attempt).allowed, true);
  });

  test('failures while locked are ignored', () => {
    const { clock, throttle } = setup();
    const attempt = { username: 'alice', ip: '192.0.2.1' };
    failTimes(throttle, 5, attempt);

    clock.now += 10 * minute;
    throttle.recordFailure(attempt);

    assert.deepEqual(throttle.check(attempt), { allowed: false, retryAfterSeconds: 300 });
  });

  test('forgets failures outside window', () => {
    const { clock, throttle } = setup();
    const attempt = { username: 'alice', ip: '192.0.2.1' };
    failTimes(throttle, 4, attempt);

    clock.now += 15 * minute;
    throttle.recordFailure(attempt);

    assert.equal(throttle.check(attempt).allowed, true);
  });

  test('success clears account, not IP', () => {
    const { throttle } = setup({ maxFailuresPerIp: 6 });
    const attempt = { username: 'alice', ip: '192.0.2.1' };
    failTimes(throttle, 4, attempt);

    throttle.recordSuccess(attempt);
    failTimes(throttle, 1, attempt);
    assert.equal(throttle.check({ username: 'alice', ip: '198.51.100.7' }).allowed, true);

    throttle.recordFailure({ username: 'bob', ip: attempt.ip });
    assert.equal(throttle.check({ username: 'carol', ip: attempt.ip }).allowed, false);
  });

  test('success keeps failures from other IPs', () => {
    const { throttle } = setup({ maxFailuresPerAccount: 3 });

    throttle.recordFailure({ username: 'alice', ip: '192.0.2.1' });
    throttle.recordFailure({ username: 'alice', ip: '192.0.2.2' });
    throttle.recordSuccess({ username: 'alice', ip: '192.0.2.3' });
    throttle.recordFailure({ username: 'alice', ip: '192.0.2.4' });

    assert.equal(throttle.check({ username: 'alice', ip: '192.0.2.3' }).allowed, false);
  });

  test('evicts expired entries', () => {
    const { clock, throttle } = setup();

    for (let i = 0; i < 50; i += 1) {
      throttle.recordFailure({ username: `user${i}`, ip: `192.0.2.${i}` });
    }
    assert.equal(throttle.size, 150);

    clock.now += 15 * minute;
    throttle.recordFailure({ username: 'late', ip: '198.51.100.7' });

    assert.equal(throttle.size, 3);
  });

  test('caps entries, dropping stalest', () => {
    const { clock, throttle } = setup({ maxEntries: 10 });

    for (let i = 0; i < 1_000; i += 1) {
      clock.now += 1;
      throttle.recordFailure({ username: `user${i}`, ip: `192.0.2.${i % 256}` });
      assert.ok(throttle.size <= 10, `size ${throttle.size} after ${i + 1} failures`);
    }

    failTimes(throttle, 5, { username: 'alice', ip: '198.51.100.7' });
    assert.equal(throttle.check({ username: 'alice', ip: '198.51.100.7' }).allowed, false);
  });

  const badOptions: Array<[keyof LoginThrottleOptions, number]> = [
    ['maxFailuresPerAccountAndIp', 0],
    ['maxFailuresPerAccount', 0],
    ['maxFailuresPerIp', -1],
    ['windowMs', 1.5],
    ['lockoutMs', Number.NaN],
    ['maxEntries', Number.POSITIVE_INFINITY],
  ];

  for (const [name, value] of badOptions) {
    test(`rejects invalid ${name}`, () => {
      assert.throws(() => new LoginThrottle({ [name]: value }), { name: 'RangeError', message: new RegExp(name) });
    });
  }
});

describe('LoginThrottle.reserve', () => {
  test('parallel reservations stop at the limit', () => {
    const throttle = new LoginThrottle({ now: () => 1_000_000 });
    const attempt = { username: 'parallel', ip: '192.0.2.50' };

    const decisions = Array.from({ length: 10 }, () => throttle.reserve(attempt));

    assert.equal(decisions.filter((decision) => decision.allowed).length, 5);
  });

  test('outcomes release reservations', () => {
    const throttle = new LoginThrottle({ now: () => 1_000_000 });
    const attempt = { username: 'released', ip: '192.0.2.51' };

    for (let index = 0; index < 4; index += 1) {
      assert.equal(throttle.reserve(attempt).allowed, true);
      throttle.recordSuccess(attempt);
    }

    assert.equal(throttle.reserve(attempt).allowed, true);
  });

  test('cancelled attempts are not counted as failures', () => {
    const throttle = new LoginThrottle({ now: () => 1_000_000 });
    const attempt = { username: 'outage', ip: '192.0.2.52' };

    for (let index = 0; index < 20; index += 1) {
      assert.equal(throttle.reserve(attempt).allowed, true, `attempt ${index + 1}`);
      throttle.cancel(attempt);
    }

    assert.equal(throttle.check(attempt).allowed, true);
  });
});
