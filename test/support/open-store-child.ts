// A child process for store tests: it loads its modules, prints "ready", waits for "go" on standard
// input, opens the store given as JSON in argv[2], adds the user named in argv[3], and prints "ok"
// or the error. The parent releases several children at once so that their migrations overlap.
import readline from 'node:readline';

import { openStore, type StoreLocation } from '../../src/store/database.ts';
import { insertUser } from '../../src/store/users.ts';

const location = JSON.parse(process.argv[2]) as StoreLocation;
const username = process.argv[3];

const input = readline.createInterface({ input: process.stdin });
process.stdout.write('ready\n');
await new Promise<void>((resolve) => input.once('line', () => resolve()));
input.close();

try {
  const store = await openStore(location);
  await insertUser(store, username, 'hash');
  await store.destroy();
  process.stdout.write('ok\n');
} catch (error) {
  process.stdout.write(`failed: ${(error as Error).message}\n`);
}
