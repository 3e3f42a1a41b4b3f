// AuditWriter on every store backend: the allow-list, batching, the bounded queue and the final flush.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';

import type { Logger } from 'pino';

import { queryAuditEvents } from '../../src/audit/audit-store.ts';
import { AuditWriter } from '../../src/audit/audit-writer.ts';
import { createLogger } from '../../src/log/logger.ts';
import { openStore } from '../../src/store/database.ts';
import { storeBackends, useFreshStore } from '../support/store-backends.ts';

// Long enough that no timer flush runs during a test; flushes come from a full batch or a call.
const neverMs = 3_600_000;

function capturedLogger(lines: string[]): Logger {
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      callback();
    },
  });
  return createLogger('info', sink);
}

for (const backend of storeBackends) {
  describe(`audit writer on ${backend.name}`, () => {
    const opened = useFreshStore(backend);
    let lines: string[];
    let logger: Logger;
    let writer: AuditWriter | null;
    beforeEach(async () => {
      await opened.store.deleteFrom('audit_events').execute();
      lines = [];
      logger = capturedLogger(lines);
      writer = null;
    });
    afterEach(async () => {
      await writer?.stop();
    });

    const storedRows = () => queryAuditEvents(opened.store, { sinceMs: 0, events: [], limit: 10_000 });

    test('stores allow-listed fields only', async () => {
      writer = new AuditWriter({ store: opened.store, logger, flushIntervalMs: neverMs });
      logger.warn({ event: 'login.failed', username: 'bob', ip: '127.0.0.1', password: 'hunter2 hunter2', note: 'not audited' }, 'login failed');
      logger.info({ event: 'http.request', path: '/login', status: 401 }, 'request completed');
      logger.info({ event: 'key.rotated', active_kid: 'kid-1' }, 'signing keys changed');
      await writer.flush();

      const rows = await storedRows();
      assert.deepEqual(rows.map((row) => row.event), ['login.failed']);
      assert.deepEqual(rows[0].fields, { username: 'bob', ip: '127.0.0.1' });
      assert.equal(rows[0].level, 40);
    });

    test('rejection floods are capped', async () => {
      writer = new AuditWriter({ store: opened.store, logger, flushIntervalMs: neverMs, maxRejectionsPerMinute: 3 });
      for (let index = 0; index < 2; index += 1) {
        logger.info({ event: 'handshake.rejected', code: 'rate_limited', ip: '127.0.0.1' }, 'handshake rejected');
      }
      for (let index = 0; index < 5; index += 1) {
        logger.info({ event: 'handshake.rejected', code: 'token_invalid', ip: '127.0.0.1' }, 'handshake rejected');
      }
      await writer.flush();

      const rows = await storedRows();
      assert.deepEqual(rows.map((row) => row.fields.code), ['token_invalid', 'token_invalid', 'token_invalid'], 'a rejection flood filled the audit table');
      assert.ok(lines.some((line) => JSON.parse(line).event === 'audit.rejections_suppressed'), 'the suppressed rejections were not reported');
    });

    test('long values are cut', async () => {
      writer = new AuditWriter({ store: opened.store, logger, flushIntervalMs: neverMs });
      logger.info({ event: 'handshake.rejected', code: 'origin_not_allowed', origin: `https://${'a'.repeat(500)}.invalid` }, 'handshake rejected');
      await writer.flush();

      const [row] = await storedRows();
      assert.equal(String(row.fields.origin).length, 200);
    });

    test('writes a full batch without waiting', async () => {
      writer = new AuditWriter({ store: opened.store, logger, flushIntervalMs: neverMs, batchSize: 100 });
      for (let index = 0; index < 99; index += 1) {
        logger.info({ event: 'handshake.rejected', code: 'origin_not_allowed', ip: '127.0.0.1' }, 'handshake rejected');
      }
      assert.equal((await storedRows()).length, 0, 'a partial batch waits for the timer');
      // The 100th event starts the write by itself: nothing here calls flush().
      logger.info({ event: 'handshake.rejected', code: 'origin_not_allowed', ip: '127.0.0.1' }, 'handshake rejected');
      let stored = 0;
      for (let attempt = 0; attempt < 100 && stored < 100; attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        stored = (await storedRows()).length;
      }
      assert.equal(stored, 100);
    });

    test('stop writes what is queued', async () => {
      writer = new AuditWriter({ store: opened.store, logger, flushIntervalMs: neverMs });
      for (const username of ['ann', 'ben', 'cy']) {
        logger.info({ event: 'login.succeeded', username, ip: '127.0.0.1' }, 'login succeeded');
      }
      await writer.stop();
      writer = null;
      assert.deepEqual((await storedRows()).map((row) => row.fields.username), ['ann', 'ben', 'cy']);
    });

    test('database down drops past the bound', async () => {
      const closed = await openStore(opened.target.location);
      await closed.destroy();
      writer = new AuditWriter({ store: closed, logger, flushIntervalMs: neverMs, maxQueued: 5 });
      for (let index = 0; index < 8; index += 1) {
        logger.warn({ event: 'login.failed', username: `user-${index}`, ip: '127.0.0.1' }, 'login failed');
      }
      await writer.flush();

      assert.equal(writer.dropped, 3);
      await new Promise((resolve) => setImmediate(resolve));
      const events = lines.map((line) => JSON.parse(line).event as string);
      assert.equal(events.filter((event) => event === 'audit.dropped').length, 1, 'one warning for the drops');
      assert.equal(events.filter((event) => event === 'audit.write_failed').length, 1, 'one warning for the failed write');
    });
  });
}
