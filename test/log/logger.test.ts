// The logger's backstop blanks secret-named fields at the top level and one level down, whatever
// the caller passes, and leaves the rest of the line as it was.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';

import { createLogger, pathWithoutQuery } from '../../src/log/logger.ts';

function capture(): { lines: Array<Record<string, unknown>>; sink: Writable } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean).map((line: string) => JSON.parse(line)));
      callback();
    },
  });
  return { lines, sink };
}

test('secret fields redacted two levels', () => {
  const { lines, sink } = capture();
  const logger = createLogger('info', sink);
  const request = { method: 'GET', authorization: 'Bearer eyJhbGciOi.secret.value', cookie: 'session=abc' };

  logger.info({ event: 'test.secrets', token: 'tok', password: 'pw', client_secret: 'cs', request, headers: { host: 'h' } }, 'line');

  assert.equal(lines.length, 1);
  const [line] = lines;
  assert.equal(line.event, 'test.secrets');
  assert.equal(line.token, '[redacted]');
  assert.equal(line.password, '[redacted]');
  assert.equal(line.client_secret, '[redacted]');
  assert.equal(line.headers, '[redacted]');
  assert.deepEqual(line.request, { method: 'GET', authorization: '[redacted]', cookie: '[redacted]' });
  assert.equal(request.authorization, 'Bearer eyJhbGciOi.secret.value', 'the caller\'s object is not changed');
  assert.ok(!JSON.stringify(line).includes('secret.value'));
});

test('plain lines unchanged', () => {
  const { lines, sink } = capture();
  const logger = createLogger('info', sink);

  logger.info({ event: 'test.plain', connection_id: 'c1', scope: 'subscribe:users/a/#', nested: { kind: 'device' } }, 'line');

  assert.equal(lines[0].connection_id, 'c1');
  assert.equal(lines[0].scope, 'subscribe:users/a/#');
  assert.deepEqual(lines[0].nested, { kind: 'device' });
});

test('null-prototype objects redacted', () => {
  const { lines, sink } = capture();
  const parsed = Object.assign(Object.create(null) as Record<string, unknown>, { grant_type: 'client_credentials', client_secret: 'cs-1' });

  createLogger('info', sink).info({ event: 'test.form', form: parsed }, 'line');

  assert.deepEqual(lines[0].form, { grant_type: 'client_credentials', client_secret: '[redacted]' });
  assert.ok(!JSON.stringify(lines[0]).includes('cs-1'));
});

test('absolute-form target loses credentials', () => {
  assert.equal(pathWithoutQuery('http://sensor-1:s3cret@localhost/healthz?x=1'), '/healthz');
  assert.equal(pathWithoutQuery('https://host'), '/');
  assert.equal(pathWithoutQuery('/ws?token=abc'), '/ws');
});
