import { auditedFields, isAuditedEvent } from '../audit/audit-events.ts';
import { queryAuditEvents, type StoredAuditRecord } from '../audit/audit-store.ts';
import { parseOptionArgs, resolveOptions } from '../config/load.ts';
import { openStore } from '../store/database.ts';
import { CommandError, printJson, printLine } from './output.ts';

/** Usage of `portcullis audit`. */
export const auditUsage = `portcullis audit [--since 24h|ISO-TIME] [--event NAME]... [--limit N] [--json]`;

const defaultSince = '24h';
const defaultLimit = 1000;
const maxLimit = 100_000;
const unitMs: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Converts `--since` to epoch milliseconds: a duration before `nowMs` such as `90s`, `15m`, `1h`
 * or `7d`, or an ISO 8601 timestamp such as `2026-12-05T08:00:00Z`.
 */
export function parseSince(text: string, nowMs: number): number {
  const duration = /^(\d{1,9})([smhd])$/.exec(text);
  if (duration) {
    return nowMs - Number(duration[1]) * unitMs[duration[2]];
  }

  const time = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(time)) {
    throw new CommandError('invalid_since', `--since ${JSON.stringify(text)} is neither a duration (such as 30m, 1h or 7d) nor an ISO 8601 time (such as 2026-12-05T08:00:00Z).`, 2);
  }
  return time;
}

function parseLimit(text: string | undefined): number {
  if (text === undefined) {
    return defaultLimit;
  }
  const limit = /^\d{1,6}$/.test(text) ? Number(text) : Number.NaN;
  if (!(limit >= 1 && limit <= maxLimit)) {
    throw new CommandError('invalid_limit', `--limit ${JSON.stringify(text)} must be a whole number from 1 to ${maxLimit}.`, 2);
  }
  return limit;
}

function parseEvents(names: string[]): string[] {
  const unknown = names.filter((name) => !isAuditedEvent(name));
  if (unknown.length > 0) {
    throw new CommandError('invalid_event', `--event ${unknown.map((name) => JSON.stringify(name)).join(', ')} is not an audited event; use one of: ${Object.keys(auditedFields).join(', ')}.`, 2);
  }
  return [...new Set(names)];
}

// Usernames, origins and paths come from clients, so anything beyond plain characters is quoted
// and escaped, and no control character reaches the operator's terminal.
function formatValue(value: string | number | boolean): string {
  const text = String(value);
  if (/^[\w.:/@+-]+$/.test(text)) {
    return text;
  }
  // JSON.stringify leaves C1 controls (such as CSI, U+009B) and bidi overrides as they are, and a
  // terminal would act on them; client-supplied values must not.
  return JSON.stringify(text).replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function formatRow(record: StoredAuditRecord): string {
  const fields = Object.entries(record.fields).map(([name, value]) => `${name}=${formatValue(value)}`).join(' ');
  return `${new Date(record.time).toISOString()}\t${record.event}\t${fields}`;
}

/**
 * Runs `portcullis audit`: prints the stored security events since `--since` (default 24 hours),
 * oldest first, at most `--limit` (default 1000, the newest ones), optionally only the named events.
 */
export async function runAudit(argv: string[]): Promise<void> {
  const { values, positionals } = parseOptionArgs(argv, {
    since: { type: 'string' },
    event: { type: 'string', multiple: true },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (positionals.length > 0) {
    throw new CommandError('usage', `Unexpected argument "${positionals[0]}".\n${auditUsage}`, 2);
  }
  const sinceMs = parseSince(typeof values.since === 'string' ? values.since : defaultSince, Date.now());
  const events = parseEvents((values.event as string[] | undefined) ?? []);
  const limit = parseLimit(values.limit as string | undefined);
  const options = resolveOptions(values, process.env);

  const store = await openStore(options);
  try {
    const records = await queryAuditEvents(store, { sinceMs, events, limit });
    if (values.json) {
      printJson(records.map((record) => ({ ...record, time: new Date(record.time).toISOString() })));
      return;
    }
    records.forEach((record) => printLine(formatRow(record)));
  } finally {
    await store.destroy();
  }
}
