import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ExpirySchedule } from '../../src/gateway/expiry-schedule.ts';

test('schedule returns due items once', () => {
  const schedule = new ExpirySchedule<string>(1000);
  schedule.schedule('a', 1002);
  schedule.schedule('b', 1005);

  assert.deepEqual(schedule.takeDue(1001), []);
  assert.deepEqual(schedule.takeDue(1003), ['a']);
  assert.deepEqual(schedule.takeDue(1003), []);
  assert.deepEqual(schedule.takeDue(1010), ['b']);
  assert.equal(schedule.size, 0);
});

test('schedule replaces earlier deadline', () => {
  const schedule = new ExpirySchedule<string>(1000);
  schedule.schedule('a', 1002);
  schedule.schedule('a', 1008);

  assert.deepEqual(schedule.takeDue(1005), []);
  assert.deepEqual(schedule.takeDue(1008), ['a']);
});

test('cancel removes an item', () => {
  const schedule = new ExpirySchedule<string>(1000);
  schedule.schedule('a', 1002);
  schedule.cancel('a');
  schedule.cancel('never-scheduled');

  assert.deepEqual(schedule.takeDue(1100), []);
  assert.equal(schedule.size, 0);
});

test('past deadline fires on next take', () => {
  const schedule = new ExpirySchedule<string>(1000);
  schedule.takeDue(1010);
  schedule.schedule('late', 990);

  assert.deepEqual(schedule.takeDue(1011), ['late']);
});

test('many items share one bucket', () => {
  const schedule = new ExpirySchedule<number>(0);
  for (let item = 0; item < 10_000; item += 1) {
    schedule.schedule(item, 5 + (item % 3));
  }

  assert.equal(schedule.takeDue(5).length, 3334);
  assert.equal(schedule.takeDue(7).length, 6666);
});
