// The logger's event tap, which metrics and the audit trail read: every call that names an event
// reaches it, redacted, whatever the written log level.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';

import { eventTapOf, type TappedEvent } from '../../src/log/event-tap.ts';
import { createLogger, flushLogs } from '../../src/log/logger.ts';

function loggerAt(level: string) {
  const written: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      written.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      callback();
    },
  });
  const logger = createLogger(level, sink);
  const tapped: TappedEvent[] = [];
  eventTapOf(logger).subscribe((event) => tapped.push(event));
  return { logger, written, tapped };
}

test('events reach the tap redacted', () => {
  const { logger, tapped } = loggerAt('info');

  logger.info({ event: 'login.failed', username: 'alice', password: 'hunter2-hunter2' }, 'login failed');
  logger.info({ note: 'no event name' }, 'plain line');

  assert.equal(tapped.length, 1);
  assert.equal(tapped[0].event, 'login.failed');
  assert.equal(tapped[0].level, 30);
  assert.equal(tapped[0].fields.username, 'alice');
  assert.equal(tapped[0].fields.password, '[redacted]');
});

test('info events tapped at level warn', async () => {
  const { logger, written, tapped } = loggerAt('warn');

  logger.info({ event: 'handshake.accepted', client_id: 'sensor-1' }, 'accepted');
  logger.warn({ event: 'login.throttled', username: 'alice' }, 'throttled');
  logger.debug({ event: 'handshake.socket_error' }, 'debug lines stay out');
  await flushLogs(logger);

  assert.deepEqual(tapped.map((event) => event.event), ['handshake.accepted', 'login.throttled']);
  assert.deepEqual(written.map((line) => JSON.parse(line).event), ['login.throttled']);
});

test('silent writes nothing but still taps', () => {
  const { logger, written, tapped } = loggerAt('silent');

  logger.error({ event: 'handshake.failed' }, 'failed');

  assert.deepEqual(tapped.map((event) => event.event), ['handshake.failed']);
  assert.deepEqual(written, []);
});

test('a failing listener loses no line', () => {
  const { logger, written, tapped } = loggerAt('info');
  eventTapOf(logger).subscribe(() => {
    throw new Error('listener failed');
  });

  logger.info({ event: 'key.rotated' }, 'rotated');

  assert.equal(tapped.length, 1);
  assert.equal(written.length, 1);
});
