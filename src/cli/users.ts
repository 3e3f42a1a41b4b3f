import { hashPassword, validatePasswordPolicy } from '../auth/passwords.ts';
import { parseOptionArgs, resolveOptions } from '../config/load.ts';
import { recordCommandEvent } from '../audit/command-audit.ts';
import { announceThroughAdminSocket } from '../gateway/admin-socket.ts';
import { epochSeconds, openStore, type Store } from '../store/database.ts';
import { revokeGrantsOfUser } from '../store/user-grants.ts';
import { findDevice } from '../store/devices.ts';
import { findUser, insertUser, listUsers, setUserAdmin, setUserDisabled, setUserPassword, usernamePattern } from '../store/users.ts';
import { CommandError, isoTime, printJson, printLine } from './output.ts';
import { promptPassword, readPasswordFromStdin } from './password-input.ts';

/** Usage of `portcullis users`. */
export const usersUsage = `portcullis users add <username> [--password-stdin] [--admin]
portcullis users passwd <username> [--password-stdin]
portcullis users list [--json]
portcullis users disable <username>
portcullis users enable <username>
portcullis users admin <username> --on|--off`;

async function readNewPassword(fromStdin: boolean): Promise<string> {
  const password = fromStdin ? await readPasswordFromStdin() : await promptPassword();
  const problem = validatePasswordPolicy(password);
  if (problem) {
    throw new CommandError('password_rejected', `Password rejected: ${problem}`, 2);
  }
  return password;
}

/**
 * Grants (`--on`) or withdraws (`--off`) the admin role. Servers read the role on every admin
 * request, so a withdrawal takes effect at the next request without a restart, and it also ends
 * the user's sessions.
 */
async function changeAdminRole(store: Store, username: string, values: { on?: boolean; off?: boolean }): Promise<void> {
  if (values.on === values.off) {
    throw new CommandError('invalid_flag', `Give exactly one of --on or --off.\n${usersUsage}`, 2);
  }

  const admin = values.on === true;
  if (!await setUserAdmin(store, username, admin)) {
    throw new CommandError('user_not_found', `User "${username}" does not exist.`);
  }
  if (admin) {
    await recordCommandEvent(store, 'user.admin_granted', { username });
    printLine(`Granted the admin role to ${username}.`);
    return;
  }

  // Sessions carry the admin-only `subscribe:admin/stats` scope until their token expires, so they end now.
  const revoked = await revokeGrantsOfUser(store, username, 'admin_withdrawn');
  await recordCommandEvent(store, 'user.admin_withdrawn', { username, revoked_grants: revoked });
  printLine(`Withdrew the admin role from ${username}; ended ${revoked} session(s) and device grant(s).`);
}

/** Runs `portcullis users <action>` against the database in `--data-dir`. */
export async function runUsers(argv: string[]): Promise<void> {
  const { values, positionals } = parseOptionArgs(argv, {
    'password-stdin': { type: 'boolean' },
    json: { type: 'boolean' },
    admin: { type: 'boolean' },
    on: { type: 'boolean' },
    off: { type: 'boolean' },
  });
  const [action, username] = positionals;
  const options = resolveOptions(values, process.env);

  if (action !== 'list' && (!username || !usernamePattern.test(username))) {
    throw new CommandError('invalid_username', `Give a username of 1 to 64 letters, digits, ".", "_", "-" or "@", not dots alone.\n${usersUsage}`, 2);
  }

  const store = await openStore(options);
  try {
    switch (action) {
      case 'add': {
        if (await findUser(store, username)) {
          throw new CommandError('user_exists', `User "${username}" already exists; use "portcullis users passwd ${username}" to change the password.`);
        }
        // A device's client-credentials `sub` is its client id, so the two namespaces must not overlap.
        if (await findDevice(store, username)) {
          throw new CommandError('name_taken', `"${username}" is a device's client id; devices and users need distinct names.`, 2);
        }
        const admin = values.admin === true;
        await insertUser(store, username, await hashPassword(await readNewPassword(values['password-stdin'] === true)), admin);
        await recordCommandEvent(store, 'user.added', { username, admin });
        printLine(`Added user ${username}${admin ? ' with the admin role' : ''}.`);
        return;
      }
      case 'passwd': {
        const hash = await hashPassword(await readNewPassword(values['password-stdin'] === true));
        if (!await setUserPassword(store, username, hash)) {
          throw new CommandError('user_not_found', `User "${username}" does not exist.`);
        }
        // A password change is how a stolen account is recovered, so every existing session ends.
        const revoked = await revokeGrantsOfUser(store, username, 'password_changed');
        await recordCommandEvent(store, 'user.password_changed', { username, revoked_grants: revoked });
        printLine(`Changed the password of ${username}; ended ${revoked} session(s) and device grant(s).`);
        return;
      }
      case 'list': {
        const users = await listUsers(store);
        const rows = users.map((user) => ({ username: user.username, disabled: user.disabled === 1, admin: user.admin === 1, created_at: isoTime(user.created_at) }));
        if (values.json) {
          printJson(rows);
          return;
        }
        rows.forEach((row) => printLine(`${row.username}\t${row.disabled ? 'disabled' : 'enabled'}\t${row.admin ? 'admin' : 'user'}\t${row.created_at}`));
        return;
      }
      case 'admin':
        await changeAdminRole(store, username, values);
        return;
      case 'disable':
      case 'enable': {
        // The event commits with the flag and makes every running server close the user's live
        // sockets with 4403 and forget that it admitted the user's tokens.
        const event = action === 'disable' ? { kind: 'user', value: username, reason: 'user_disabled', expiresAt: epochSeconds() } as const : undefined;
        if (!await setUserDisabled(store, username, action === 'disable', event)) {
          throw new CommandError('user_not_found', `User "${username}" does not exist.`);
        }
        if (event) {
          await announceThroughAdminSocket(options.dataDir, event);
          // Grants are revoked too, so enabling the user again does not revive old sessions.
          await revokeGrantsOfUser(store, username, 'user_disabled');
        }
        await recordCommandEvent(store, action === 'disable' ? 'user.disabled' : 'user.enabled', { username });
        printLine(`${action === 'disable' ? 'Disabled' : 'Enabled'} user ${username}.`);
        return;
      }
      default:
        throw new CommandError('unknown_command', `Unknown users command "${action ?? ''}".\n${usersUsage}`, 2);
    }
  } finally {
    await store.destroy();
  }
}
