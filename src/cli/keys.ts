import { parseOptionArgs, resolveOptions } from '../config/load.ts';
import { recordCommandEvent } from '../audit/command-audit.ts';
import { adminRequest } from '../gateway/admin-socket.ts';
import { openStore } from '../store/database.ts';
import { rotateSigningKey } from '../store/signing-keys.ts';
import { CommandError, isoTime, printJson, printLine } from './output.ts';

/** Usage of `portcullis keys`. */
export const keysUsage = `portcullis keys list [--json]
portcullis keys rotate`;

/**
 * Runs `portcullis keys <action>`. `list` shows signing keys by `kid`, never their private parts;
 * `rotate` adds a new active key and notifies a running server, which signs with it at once.
 */
export async function runKeys(argv: string[]): Promise<void> {
  const { values, positionals } = parseOptionArgs(argv, { json: { type: 'boolean' } });
  const options = resolveOptions(values, process.env);
  const [action] = positionals;
  if (action !== 'list' && action !== 'rotate') {
    throw new CommandError('unknown_command', `Unknown keys command "${action ?? ''}".\n${keysUsage}`, 2);
  }

  const store = await openStore(options);
  try {
    if (action === 'rotate') {
      const kid = await rotateSigningKey(store);
      await recordCommandEvent(store, 'key.rotated', { kid });
      const reloaded = await adminRequest(options.dataDir, 'POST', '/keys/reload');
      printLine(reloaded === null
        ? `New signing key ${kid}. No server is running; it signs with the new key from its next start.`
        : `New signing key ${kid}. The running server signs with it now; the previous key stays published until its tokens expire.`);
      return;
    }

    const rows = await store.selectFrom('signing_keys').select(['kid', 'status', 'created_at', 'retired_at']).orderBy('created_at').execute();
    const keys = rows.map((row) => ({
      kid: row.kid,
      alg: 'ES256',
      status: row.status,
      created_at: isoTime(row.created_at),
      retired_at: row.retired_at === null ? null : isoTime(row.retired_at),
    }));
    if (values.json) {
      printJson(keys);
      return;
    }
    keys.forEach((key) => printLine(`${key.kid}\t${key.alg}\t${key.status}\t${key.created_at}`));
  } finally {
    await store.destroy();
  }
}
