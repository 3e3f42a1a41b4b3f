// The admin role through the command-line tool, on a data directory without a running server.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, test } from 'node:test';

import { rememberSecret } from '../support/capture.ts';
import { runCli, temporaryDataDir } from '../support/server.ts';

const dataDir = temporaryDataDir();
const password = 'an admin role test password';
rememberSecret(password);

after(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function listedUsers(): Promise<Array<{ username: string; admin: boolean }>> {
  const listed = await runCli(dataDir, ['users', 'list', '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  return JSON.parse(listed.stdout) as Array<{ username: string; admin: boolean }>;
}

test('users add --admin stores the role', async () => {
  const admin = await runCli(dataDir, ['users', 'add', 'root-ada', '--password-stdin', '--admin'], `${password}\n`);
  const plain = await runCli(dataDir, ['users', 'add', 'plain-bo', '--password-stdin'], `${password}\n`);

  assert.equal(admin.code, 0, admin.stderr);
  assert.match(admin.stdout, /with the admin role/);
  assert.equal(plain.code, 0, plain.stderr);
  const users = await listedUsers();
  assert.equal(users.find((user) => user.username === 'root-ada')?.admin, true);
  assert.equal(users.find((user) => user.username === 'plain-bo')?.admin, false);
  const table = await runCli(dataDir, ['users', 'list']);
  assert.match(table.stdout, /^root-ada\tenabled\tadmin\t/m);
  assert.match(table.stdout, /^plain-bo\tenabled\tuser\t/m);
});

test('users admin grants and withdraws', async () => {
  const granted = await runCli(dataDir, ['users', 'admin', 'plain-bo', '--on']);
  const afterGrant = await listedUsers();
  const withdrawn = await runCli(dataDir, ['users', 'admin', 'plain-bo', '--off']);
  const afterWithdraw = await listedUsers();

  assert.equal(granted.code, 0, granted.stderr);
  assert.equal(afterGrant.find((user) => user.username === 'plain-bo')?.admin, true);
  assert.equal(withdrawn.code, 0, withdrawn.stderr);
  assert.equal(afterWithdraw.find((user) => user.username === 'plain-bo')?.admin, false);
});

test('users admin needs one flag and a known user', async () => {
  const neither = await runCli(dataDir, ['users', 'admin', 'plain-bo']);
  const both = await runCli(dataDir, ['users', 'admin', 'plain-bo', '--on', '--off']);
  const unknown = await runCli(dataDir, ['users', 'admin', 'nobody', '--on']);

  assert.equal(neither.code, 2);
  assert.match(neither.stderr, /--on or --off/);
  assert.equal(both.code, 2);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /does not exist/);
});
