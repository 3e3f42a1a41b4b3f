import os from 'node:os';

import type { Store } from '../store/database.ts';
import { pickAuditedFields } from './audit-events.ts';
import { insertAuditEvents } from './audit-store.ts';

const infoLevel = 30;

// The operating-system account that ran the command; a container without a passwd entry has none.
function commandActor(): string {
  try {
    return `cli:${os.userInfo().username}`;
  } catch {
    return `cli:uid-${process.getuid?.() ?? 'unknown'}`;
  }
}

/**
 * Stores the audit event of a management command that changed security state, with `actor` set to
 * `cli:<operating-system user>`. A management command has no log stream of its own, so the event
 * goes straight to the database, once, whether or not a server runs. The change itself is already
 * committed, so a failed write is reported on standard error and does not fail the command.
 */
export async function recordCommandEvent(store: Store, event: string, fields: Record<string, unknown>): Promise<void> {
  const picked = pickAuditedFields(event, { ...fields, actor: commandActor() });
  try {
    await insertAuditEvents(store, [{ time: Date.now(), event, level: infoLevel, fields: picked }]);
  } catch (error) {
    process.stderr.write(`portcullis: writing the audit event ${event} failed (${(error as Error).message}); the change itself was made.\n`);
  }
}
