// The background pruning of the audit trail on every store backend.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';

import { startAuditPruning } from '../../src/audit/audit-retention.ts';
import { insertAuditEvents, queryAuditEvents } from '../../src/audit/audit-store.ts';
import { createLogger } from '../../src/log/logger.ts';
import { storeBackends, useFreshStore } from '../support/store-backends.ts';

const dayMs = 86_400_000;

for (const backend of storeBackends) {
  describe(`audit pruning on ${backend.name}`, () => {
    const opened = useFreshStore(backend);

    test('start prunes expired rows', async () => {
      const nowMs = Date.now();
      await insertAuditEvents(opened.store, [
        { time: nowMs - 8 * dayMs, event: 'login.failed', level: 40, fields: { username: 'old' } },
        { time: nowMs - 6 * dayMs, event: 'login.failed', level: 40, fields: { username: 'kept' } },
        { time: nowMs, event: 'login.failed', level: 40, fields: { username: 'new' } },
      ]);
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk, _encoding, callback) {
          lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
          callback();
        },
      });

      const stop = startAuditPruning({ store: opened.store, logger: createLogger('info', sink), retentionDays: 7 });
      try {
        for (let attempt = 0; attempt < 100 && !lines.some((line) => line.includes('"audit.pruned"')); attempt += 1) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      } finally {
        await stop();
      }

      const pruned = lines.map((line) => JSON.parse(line)).filter((line) => line.event === 'audit.pruned');
      assert.equal(pruned.length, 1);
      assert.equal(pruned[0].deleted, 1);
      assert.equal(pruned[0].retention_days, 7);
      const kept = await queryAuditEvents(opened.store, { sinceMs: 0, events: [], limit: 10 });
      assert.deepEqual(kept.map((row) => row.fields.username), ['kept', 'new']);
    });
  });
}
