// The audit_events table on every store backend: insert, query filters, and batched pruning.
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import { pruneExpiredAuditEvents } from '../../src/audit/audit-retention.ts';
import { insertAuditEvents, pruneAuditEvents, queryAuditEvents, type AuditRecord } from '../../src/audit/audit-store.ts';
import { storeBackends, useFreshStore } from '../support/store-backends.ts';

const dayMs = 86_400_000;
const nowMs = Date.UTC(2026, 11, 5, 8, 0, 0);

function record(event: string, time: number, fields: AuditRecord['fields'] = {}): AuditRecord {
  return { time, event, level: 30, fields };
}

for (const backend of storeBackends) {
  describe(`audit store on ${backend.name}`, () => {
    const opened = useFreshStore(backend);
    beforeEach(async () => {
      await opened.store.deleteFrom('audit_events').execute();
    });

    test('query returns fields oldest first', async () => {
      await insertAuditEvents(opened.store, [
        record('login.failed', nowMs - 2000, { username: 'bob', ip: '127.0.0.1' }),
        record('login.succeeded', nowMs - 1000, { username: 'bob', ip: '127.0.0.1' }),
      ]);
      const rows = await queryAuditEvents(opened.store, { sinceMs: 0, events: [], limit: 10 });
      assert.deepEqual(rows.map((row) => row.event), ['login.failed', 'login.succeeded']);
      assert.deepEqual(rows[0].fields, { username: 'bob', ip: '127.0.0.1' });
      assert.equal(rows[0].time, nowMs - 2000);
      assert.equal(rows[0].level, 30);
      assert.equal(typeof rows[0].id, 'number');
    });

    test('query filters by time and event', async () => {
      await insertAuditEvents(opened.store, [
        record('login.failed', nowMs - 3 * 3_600_000),
        record('login.failed', nowMs - 60_000),
        record('handshake.rejected', nowMs - 30_000),
        record('key.rotated', nowMs - 10_000),
      ]);
      const recent = await queryAuditEvents(opened.store, { sinceMs: nowMs - 3_600_000, events: [], limit: 10 });
      assert.deepEqual(recent.map((row) => row.event), ['login.failed', 'handshake.rejected', 'key.rotated']);
      const named = await queryAuditEvents(opened.store, { sinceMs: 0, events: ['login.failed', 'key.rotated'], limit: 10 });
      assert.deepEqual(named.map((row) => row.event), ['login.failed', 'login.failed', 'key.rotated']);
    });

    test('limit keeps the newest', async () => {
      await insertAuditEvents(opened.store, [1, 2, 3, 4].map((n) => record('token.issued', nowMs + n, { grant_type: `g${n}` })));
      const rows = await queryAuditEvents(opened.store, { sinceMs: 0, events: [], limit: 2 });
      assert.deepEqual(rows.map((row) => row.fields.grant_type), ['g3', 'g4']);
    });

    test('pruning keeps the retention period', async () => {
      await insertAuditEvents(opened.store, [
        record('login.failed', nowMs - 31 * dayMs),
        record('login.failed', nowMs - 29 * dayMs),
        record('login.failed', nowMs - 1000),
      ]);
      assert.equal(await pruneExpiredAuditEvents(opened.store, 30, nowMs), 1);
      const kept = await queryAuditEvents(opened.store, { sinceMs: 0, events: [], limit: 10 });
      assert.deepEqual(kept.map((row) => row.time), [nowMs - 29 * dayMs, nowMs - 1000]);
    });

    test('pruning in bounded batches', async () => {
      const old = Array.from({ length: 25 }, (_, index) => record('handshake.rejected', nowMs - dayMs - index));
      await insertAuditEvents(opened.store, [...old, record('handshake.rejected', nowMs)]);
      assert.equal(await pruneAuditEvents(opened.store, { beforeMs: nowMs - 1000, batchSize: 10, maxBatches: 2 }), 20);
      assert.equal(await pruneAuditEvents(opened.store, { beforeMs: nowMs - 1000, batchSize: 10 }), 5);
      const kept = await queryAuditEvents(opened.store, { sinceMs: 0, events: [], limit: 100 });
      assert.deepEqual(kept.map((row) => row.time), [nowMs]);
    });

    test('concurrent pruning deletes each row once', async () => {
      const old = Array.from({ length: 40 }, (_, index) => record('login.failed', nowMs - dayMs - index));
      await insertAuditEvents(opened.store, [...old, record('login.failed', nowMs)]);
      const counts = await Promise.all([1, 2, 3].map(() => pruneAuditEvents(opened.store, { beforeMs: nowMs - 1000, batchSize: 7 })));
      assert.equal(counts.reduce((sum, count) => sum + count, 0), 40);
      const kept = await queryAuditEvents(opened.store, { sinceMs: 0, events: [], limit: 100 });
      assert.equal(kept.length, 1);
    });
  });
}
