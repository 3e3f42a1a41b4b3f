// `portcullis audit` through the real CLI on every store backend: filters, JSON output and bad arguments.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { insertAuditEvents } from '../../src/audit/audit-store.ts';
import { parseSince } from '../../src/cli/audit.ts';
import { CommandError } from '../../src/cli/output.ts';
import { openStore } from '../../src/store/database.ts';
import { runServerCli, type CliResult, type TestServer } from '../support/server.ts';
import { storeBackends, type TestStoreLocation } from '../support/store-backends.ts';

const hourMs = 3_600_000;

interface JsonRecord {
  id: number;
  time: string;
  event: string;
  level: number;
  fields: Record<string, unknown>;
}

describe('parseSince', () => {
  const nowMs = Date.UTC(2026, 11, 5, 8, 0, 0);

  test('durations in every unit', () => {
    assert.equal(parseSince('90s', nowMs), nowMs - 90_000);
    assert.equal(parseSince('15m', nowMs), nowMs - 15 * 60_000);
    assert.equal(parseSince('1h', nowMs), nowMs - hourMs);
    assert.equal(parseSince('7d', nowMs), nowMs - 7 * 24 * hourMs);
  });

  test('ISO timestamps', () => {
    assert.equal(parseSince('2026-12-05T07:00:00Z', nowMs), nowMs - hourMs);
    assert.equal(parseSince('2026-12-05', nowMs), Date.UTC(2026, 11, 5));
  });

  test('invalid values exit 2', () => {
    for (const text of ['', '1', 'h', '-1h', '1w', '1.5h', 'yesterday', '12/05/2026', '2026-13-45']) {
      assert.throws(() => parseSince(text, nowMs), (error: unknown) => error instanceof CommandError && error.exitCode === 2 && error.code === 'invalid_since', text);
    }
  });
});

for (const backend of storeBackends) {
  describe(`portcullis audit on ${backend.name}`, () => {
    let target: TestStoreLocation;
    // The CLI helper reads only the data directory and the database URL of a server.
    let node: TestServer;
    const nowMs = Date.now();

    before(async () => {
      target = await backend.createLocation();
      node = { dataDir: target.location.dataDir, options: { databaseUrl: target.location.databaseUrl } } as unknown as TestServer;
      const store = await openStore(target.location);
      try {
        await insertAuditEvents(store, [
          { time: nowMs - 3 * hourMs, event: 'login.failed', level: 40, fields: { username: 'old', ip: '127.0.0.1' } },
          { time: nowMs - 10 * 60_000, event: 'login.failed', level: 40, fields: { username: 'bob', ip: '127.0.0.1' } },
          { time: nowMs - 5 * 60_000, event: 'handshake.rejected', level: 30, fields: { code: 'origin_not_allowed', origin: 'https://x.invalid\u001b[31m\u009b2J\u202e', ip: '127.0.0.1' } },
          { time: nowMs - 60_000, event: 'device.added', level: 30, fields: { client_id: 'sensor-1', actor: 'cli:root' } },
        ]);
      } finally {
        await store.destroy();
      }
    });
    after(async () => {
      await target?.remove();
    });

    async function auditJson(args: string[]): Promise<JsonRecord[]> {
      const result = await runServerCli(node, ['audit', ...args, '--json']);
      assert.equal(result.code, 0, result.stderr);
      const parsed = JSON.parse(result.stdout) as JsonRecord[];
      assert.ok(Array.isArray(parsed));
      return parsed;
    }

    test('since filters by duration', async () => {
      const recent = await auditJson(['--since', '1h']);
      assert.deepEqual(recent.map((row) => row.event), ['login.failed', 'handshake.rejected', 'device.added']);
      const wider = await auditJson(['--since', '4h']);
      assert.deepEqual(wider.map((row) => row.fields.username ?? row.event), ['old', 'bob', 'handshake.rejected', 'device.added']);
    });

    test('since takes an ISO time', async () => {
      const rows = await auditJson(['--since', new Date(nowMs - 7 * 60_000).toISOString()]);
      assert.deepEqual(rows.map((row) => row.event), ['handshake.rejected', 'device.added']);
    });

    test('event and limit filters', async () => {
      const failed = await auditJson(['--since', '1d', '--event', 'login.failed']);
      assert.deepEqual(failed.map((row) => row.fields.username), ['old', 'bob']);
      const two = await auditJson(['--since', '1d', '--event', 'login.failed', '--event', 'device.added']);
      assert.deepEqual(two.map((row) => row.event), ['login.failed', 'login.failed', 'device.added']);
      const newest = await auditJson(['--since', '1d', '--limit', '1']);
      assert.deepEqual(newest.map((row) => row.event), ['device.added']);
    });

    test('JSON rows carry ISO times and fields', async () => {
      const [row] = await auditJson(['--since', '1h', '--event', 'device.added']);
      assert.equal(row.time, new Date(nowMs - 60_000).toISOString());
      assert.equal(row.level, 30);
      assert.deepEqual(row.fields, { client_id: 'sensor-1', actor: 'cli:root' });
    });

    test('table output escapes client values', async () => {
      const result = await runServerCli(node, ['audit', '--since', '1h']);
      assert.equal(result.code, 0, result.stderr);
      const lines = result.stdout.trim().split('\n');
      assert.equal(lines.length, 3);
      assert.match(lines[0], /\tlogin\.failed\tusername=bob ip=127\.0\.0\.1$/);
      assert.ok(!result.stdout.includes('\u001b'), 'no raw escape character reaches the terminal');
      assert.ok(!result.stdout.includes('\u009b'), 'no raw C1 control reaches the terminal');
      assert.ok(!result.stdout.includes('\u202e'), 'no raw bidi override reaches the terminal');
      assert.match(lines[1], /origin="https:\/\/x\.invalid\\u001b\[31m\\u009b2J\\u202e"/);
    });

    test('bad arguments exit 2', async () => {
      const cases: Array<[string[], RegExp]> = [
        [['--since', 'yesterday'], /--since "yesterday" is neither a duration/],
        [['--event', 'login.maybe'], /--event "login\.maybe" is not an audited event/],
        [['--limit', '0'], /--limit "0" must be a whole number from 1 to 100000/],
        [['--limit', 'ten'], /--limit "ten"/],
        [['extra'], /Unexpected argument "extra"/],
        [['--sinse', '1h'], /Unknown option '--sinse'/],
      ];
      for (const [args, message] of cases) {
        const result: CliResult = await runServerCli(node, ['audit', ...args]);
        assert.equal(result.code, 2, `portcullis audit ${args.join(' ')}`);
        assert.match(result.stderr, message);
        assert.equal(result.stdout, '');
      }
    });
  });
}
