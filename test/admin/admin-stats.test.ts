// The console's database queries, run against every store backend.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pino from 'pino';

import { ConnectionSampler, countRejectionsByCode, minuteSeries } from '../../src/admin/admin-stats.ts';
import { insertAuditEvents, type AuditRecord } from '../../src/audit/audit-store.ts';
import { ConnectionRegistry } from '../../src/gateway/registry.ts';
import { insertUser, isActiveAdmin, setUserAdmin, setUserDisabled } from '../../src/store/users.ts';
import { storeBackends, useFreshStore } from '../support/store-backends.ts';

// A fixed clock in the middle of a minute, so that every event below falls in a known minute.
const nowMs = Date.UTC(2026, 11, 5, 9, 30, 30);
const minuteMs = 60_000;
const currentMinute = Date.UTC(2026, 11, 5, 9, 30);

function rejection(code: string, time: number): AuditRecord {
  return { time, event: 'handshake.rejected', level: 30, fields: { code, ip: '127.0.0.1', path: '/ws' } };
}

for (const backend of storeBackends) {
  describe(`admin console queries on ${backend.name}`, () => {
    const opened = useFreshStore(backend);

    test('admin role read and changed', async () => {
      await insertUser(opened.store, 'root-admin', 'hash', true);
      await insertUser(opened.store, 'plain', 'hash');

      assert.equal(await isActiveAdmin(opened.store, 'root-admin'), true);
      assert.equal(await isActiveAdmin(opened.store, 'plain'), false);
      assert.equal(await setUserAdmin(opened.store, 'plain', true), true);
      assert.equal(await isActiveAdmin(opened.store, 'plain'), true);
      await setUserDisabled(opened.store, 'plain', true);
      assert.equal(await isActiveAdmin(opened.store, 'plain'), false);
      assert.equal(await setUserAdmin(opened.store, 'nobody', true), false);
    });

    test('rejections grouped by code and minute', async () => {
      await insertAuditEvents(opened.store, [
        rejection('origin_not_allowed', nowMs - 10_000),
        rejection('origin_not_allowed', nowMs - 5 * minuteMs),
        rejection('token_invalid', nowMs - 5 * minuteMs),
        // Older than an hour, so left out of both views.
        rejection('token_expired', nowMs - 2 * 60 * minuteMs),
        { time: nowMs, event: 'login.failed', level: 40, fields: { username: 'x', ip: '127.0.0.1' } },
      ]);

      const byCode = await countRejectionsByCode(opened.store, nowMs - 60 * minuteMs);
      const registry = new ConnectionRegistry({ logger: pino({ enabled: false }), expiryWarningSeconds: 30 });
      const points = await minuteSeries(opened.store, new ConnectionSampler(registry, () => nowMs), nowMs);

      assert.deepEqual(byCode, [{ code: 'origin_not_allowed', count: 2 }, { code: 'token_invalid', count: 1 }]);
      assert.equal(points.length, 60);
      assert.equal(points.at(-1)!.minute, currentMinute);
      assert.equal(points.at(-1)!.rejections, 1);
      assert.equal(points.at(-1)!.connections, 0);
      assert.equal(points.find((point) => point.minute === currentMinute - 5 * minuteMs)!.rejections, 2);
      assert.equal(points.find((point) => point.minute === currentMinute - 5 * minuteMs)!.connections, null);
      assert.equal(points.reduce((sum, point) => sum + point.rejections, 0), 3);
    });
  });
}
