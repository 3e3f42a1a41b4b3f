import { parseOptionArgs, resolveOptions } from '../config/load.ts';
import { openStore } from '../store/database.ts';
import { CommandError, isoTime, printJson, printLine } from './output.ts';

/** Usage of `portcullis keys`. */
export const keysUsage = 'portcullis keys list [--json]';

/** Runs `portcullis keys <action>`: lists signing keys by `kid`, never their private parts. */
export async function runKeys(argv: string[]): Promise<void> {
  const { values, positionals } = parseOptionArgs(argv, { json: { type: 'boolean' } });
  const options = resolveOptions(values, process.env);
  if (positionals[0] !== 'list') {
    throw new CommandError('unknown_command', `Unknown keys command "${positionals[0] ?? ''}".\n${keysUsage}`, 2);
  }

  const store = await openStore(options.dataDir);
  try {
    const rows = await store.selectFrom('signing_keys').select(['kid', 'status', 'created_at']).orderBy('created_at').execute();
    const keys = rows.map((row) => ({ kid: row.kid, alg: 'ES256', status: row.status, created_at: isoTime(row.created_at) }));
    if (values.json) {
      printJson(keys);
      return;
    }
    keys.forEach((key) => printLine(`${key.kid}\t${key.alg}\t${key.status}\t${key.created_at}`));
  } finally {
    await store.destroy();
  }
}
