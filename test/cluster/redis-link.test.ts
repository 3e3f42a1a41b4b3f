// The Redis link's pure helpers: reconnection delays and the URL form that logs may carry.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { describeRedisUrl, reconnectDelayMs } from '../../src/cluster/redis-link.ts';

describe('reconnectDelayMs', () => {
  const cases: { attempt: number; min: number; max: number }[] = [
    { attempt: 1, min: 50, max: 100 },
    { attempt: 2, min: 100, max: 200 },
    { attempt: 5, min: 800, max: 1600 },
    { attempt: 7, min: 2500, max: 5000 },
    { attempt: 1000, min: 2500, max: 5000 },
  ];
  for (const { attempt, min, max } of cases) {
    test(`attempt ${attempt} waits ${min} to ${max} ms`, () => {
      assert.equal(reconnectDelayMs(attempt, () => 0), min);
      assert.equal(reconnectDelayMs(attempt, () => 1), max);
    });
  }
});

describe('describeRedisUrl', () => {
  const cases: [string, string][] = [
    ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379'],
    ['redis://:secret-password@127.0.0.1:6380/2', 'redis://127.0.0.1:6380/2'],
    ['rediss://user:secret-password@cache.example.com', 'rediss://cache.example.com'],
    ['redis://127.0.0.1:6379/0?password=secret-password', 'redis://127.0.0.1:6379/0'],
  ];
  for (const [url, described] of cases) {
    test(`${described} leaves credentials out`, () => {
      assert.equal(describeRedisUrl(url), described);
      assert.doesNotMatch(describeRedisUrl(url), /secret|user/);
    });
  }
});
