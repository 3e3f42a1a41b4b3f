import { optionFlags, parseOptionArgs, resolveOptions } from '../config/load.ts';
import { recordCommandEvent } from '../audit/command-audit.ts';
import { fetchLiveConnections } from '../gateway/admin-socket.ts';
import type { ConnectionSummary } from '../gateway/registry.ts';
import { findBrowserSession } from '../store/browser-sessions.ts';
import { epochSeconds, openStore, type Store } from '../store/database.ts';
import { tokenKey } from '../store/revocation-events.ts';
import { CommandError, isoTime, printJson, printLine } from './output.ts';
import { recordAndAnnounce } from './revoke.ts';

/** Usage of `portcullis sessions`. */
export const sessionsUsage = `portcullis sessions list [--json]
portcullis sessions revoke <grant-id|connection-id>`;

// Revoked grants stay on the deny-list for the longest access-token lifetime plus leeway.
const denyListSeconds = 86_400 + 60;

async function listSessions(dataDir: string, json: boolean): Promise<void> {
  const connections = await fetchLiveConnections(dataDir) as ConnectionSummary[] | null;
  if (connections === null) {
    throw new CommandError('server_not_running', `No server is running on ${dataDir}; live connections exist only while it runs.`);
  }

  if (json) {
    printJson(connections);
    return;
  }
  printLine('ID\tKIND\tUSER_OR_CLIENT\tORIGIN_OR_DEVICE\tCONNECTED_SINCE\tEXPIRES_AT');
  for (const connection of connections) {
    const who = connection.kind === 'browser' || connection.grant_id ? connection.sub : connection.client_id;
    printLine([connection.id, connection.kind, who, connection.origin ?? '-', isoTime(connection.connected_at), isoTime(connection.expires_at)].join('\t'));
  }
}

const sessionsFlags = { json: { type: 'boolean' } } as const;

/**
 * Takes the argument after `revoke` out of `argv` when it starts with "-" but is not a known flag.
 * Grant ids are base64url, so about one in 64 starts with "-", and parseArgs would reject it as an
 * unknown option.
 */
function takeDashedRevokeId(argv: string[]): { rest: string[]; id: string | undefined } {
  const at = argv.indexOf('revoke');
  const candidate = at === -1 ? undefined : argv[at + 1];
  const flagName = candidate?.startsWith('--') ? candidate.slice(2).split('=')[0] : undefined;
  const knownFlag = candidate === '--' || (flagName !== undefined && Object.hasOwn({ ...optionFlags(), ...sessionsFlags }, flagName));
  if (candidate === undefined || !candidate.startsWith('-') || knownFlag) {
    return { rest: argv, id: undefined };
  }
  return { rest: [...argv.slice(0, at + 1), ...argv.slice(at + 2)], id: candidate };
}

async function isKnownGrant(store: Store, grantId: string): Promise<boolean> {
  return await findBrowserSession(store, grantId) !== undefined
    || await store.selectFrom('oidc_payloads').select('id').where('grant_id', '=', grantId).executeTakeFirst() !== undefined
    || await store.selectFrom('oidc_payloads').select('id').where('model', '=', 'Grant').where('id', '=', grantId).executeTakeFirst() !== undefined;
}

/** Runs `portcullis sessions <action>`: lists live connections or revokes a grant or connection. */
export async function runSessions(argv: string[]): Promise<void> {
  const dashed = takeDashedRevokeId(argv);
  const { values, positionals } = parseOptionArgs(dashed.rest, sessionsFlags);
  const [action, positionalId] = positionals;
  const id = dashed.id ?? positionalId;
  const options = resolveOptions(values, process.env);

  if (action === 'list') {
    await listSessions(options.dataDir, values.json === true);
    return;
  }
  if (action !== 'revoke') {
    throw new CommandError('unknown_command', `Unknown sessions command "${action ?? ''}".\n${sessionsUsage}`, 2);
  }
  if (!id) {
    throw new CommandError('id_required', `Give a grant id or a connection id from "portcullis sessions list".\n${sessionsUsage}`, 2);
  }

  const store = await openStore(options);
  try {
    // A grant id is looked up first, in the database: listing the live connections of a busy node
    // only to find that the id names none of them would delay the revocation.
    let grantId = await isKnownGrant(store, id) ? id : null;
    if (!grantId) {
      const live = (await fetchLiveConnections(options.dataDir) as ConnectionSummary[] | null) ?? [];
      const connection = live.find((candidate) => candidate.id === id);
      if (!connection) {
        throw new CommandError('session_not_found', `No grant or live connection "${id}" was found. A connection id works only with the --data-dir of the node that holds the connection.`);
      }
      if (!connection.grant_id) {
        // A client-credentials token belongs to no grant, so that one token is revoked by issuer and jti.
        await recordAndAnnounce(store, options.dataDir, { kind: 'token', value: tokenKey(connection.iss, connection.jti), reason: 'operator', expiresAt: connection.expires_at + 60 });
        await recordCommandEvent(store, 'session.revoked', { connection_id: id, reason: 'operator' });
        printLine(`Revoked the token of connection ${id}; the connection closes within a second. The device can get a new token unless removed.`);
        return;
      }
      grantId = connection.grant_id;
    }

    await recordAndAnnounce(store, options.dataDir, { kind: 'grant', value: grantId, reason: 'operator', expiresAt: epochSeconds() + denyListSeconds });
    await store.deleteFrom('oidc_payloads').where('grant_id', '=', grantId).execute();
    await store.deleteFrom('oidc_payloads').where('model', '=', 'Grant').where('id', '=', grantId).execute();
    await store.deleteFrom('browser_sessions').where('grant_id', '=', grantId).execute();
    await recordCommandEvent(store, 'session.revoked', { grant_id: grantId, reason: 'operator' });
    printLine(`Revoked grant ${grantId}; its live connections close within a second.`);
  } finally {
    await store.destroy();
  }
}

