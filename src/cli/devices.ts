import crypto from 'node:crypto';
import fs from 'node:fs';

import { importJWK, type JWK } from 'jose';

import { gatewayAudience, gatewayClientId } from '../auth/provider.ts';
import { parseOptionArgs, resolveOptions } from '../config/load.ts';
import { recordCommandEvent } from '../audit/command-audit.ts';
import { announceThroughAdminSocket } from '../gateway/admin-socket.ts';
import { epochSeconds, openStore, type Store } from '../store/database.ts';
import { channelScopeProblem, isDeviceScope, registeredDeviceScopes } from '../auth/channel-scopes.ts';
import { clientIdPattern, deleteDevice, findDevice, hashClientSecret, insertDevice, listDevices } from '../store/devices.ts';
import { operatorPublisher } from '../channels/publish.ts';
import { findUser } from '../store/users.ts';
import { createOfflineAuthServer } from './auth-context.ts';
import { readNewDeviceCertificate } from './device-certificate.ts';
import { CommandError, isoTime, printJson, printLine } from './output.ts';
import type { Options } from '../config/options.ts';

/** Usage of `portcullis devices`. */
export const devicesUsage = `portcullis devices add <client-id> [--public-key FILE | --certificate FILE] [--dpop-required] [--owner USERNAME] [--scope SCOPE]...
portcullis devices list [--json]
portcullis devices remove <client-id>
portcullis devices approve <user-code> --user <username>`;

const publicKeyTypes = new Set(['EC', 'OKP', 'RSA']);
const privateMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];
const defaultAlgorithms: Record<string, string> = { EC: 'ES256', OKP: 'EdDSA', RSA: 'PS256' };

/** Reads and checks a device's public JWK: an asymmetric key with no private part. */
async function readPublicJwk(file: string): Promise<JWK> {
  let jwk: JWK;
  try {
    jwk = JSON.parse(fs.readFileSync(file, 'utf8')) as JWK;
  } catch (error) {
    throw new CommandError('invalid_public_key', `--public-key ${file} could not be read as JSON (${(error as Error).message}).`, 2);
  }

  if (!jwk || typeof jwk !== 'object' || !publicKeyTypes.has(jwk.kty ?? '')) {
    throw new CommandError('invalid_public_key', `--public-key ${file} must be one public JWK with kty EC, OKP or RSA.`, 2);
  }
  if (privateMembers.some((member) => member in jwk)) {
    throw new CommandError('invalid_public_key', `--public-key ${file} contains private key material; register the public key only.`, 2);
  }

  try {
    await importJWK(jwk, jwk.alg ?? defaultAlgorithms[jwk.kty as string]);
  } catch (error) {
    throw new CommandError('invalid_public_key', `--public-key ${file} is not a usable key: ${(error as Error).message}.`, 2);
  }
  const { kty, crv, x, y, n, e, alg, kid } = jwk;
  return Object.fromEntries(Object.entries({ kty, crv, x, y, n, e, alg, kid, use: 'sig' }).filter(([, value]) => value !== undefined)) as JWK;
}

/** Reads `--scope` values (each may hold several space-separated scopes); null when none was given. */
function readScopes(values: Record<string, unknown>): string | null {
  const given = (values.scope as string[] | undefined) ?? [];
  const scopes = [...new Set(given.flatMap((value) => value.split(' ')).filter(Boolean))];
  if (given.length === 0) {
    return null;
  }

  for (const scope of scopes) {
    const problem = channelScopeProblem(scope);
    if (problem) {
      throw new CommandError('invalid_scope', `--scope ${problem}.`, 2);
    }
  }
  if (scopes.length === 0) {
    throw new CommandError('invalid_scope', '--scope must name at least one scope, such as "publish:devices/{client_id}/#".', 2);
  }
  return scopes.join(' ');
}

async function addDevice(store: Store, clientId: string, values: Record<string, unknown>, caFile: string | null): Promise<void> {
  if (await findDevice(store, clientId)) {
    throw new CommandError('device_exists', `Device "${clientId}" already exists; remove it first to register it again.`);
  }
  // A client-credentials token's `sub` is the client id, so a device named like a user would share
  // the user's `{sub}` channels.
  if (await findUser(store, clientId)) {
    throw new CommandError('name_taken', `"${clientId}" is a username; devices and users need distinct names.`, 2);
  }
  const scopes = readScopes(values);

  const owner = typeof values.owner === 'string' ? values.owner : null;
  if (owner && !await findUser(store, owner)) {
    throw new CommandError('user_not_found', `--owner ${owner}: no such user.`, 2);
  }

  if (typeof values['public-key'] === 'string' && typeof values.certificate === 'string') {
    throw new CommandError('conflicting_credentials', `Give either --public-key or --certificate, not both.\n${devicesUsage}`, 2);
  }
  // RFC 9449 section 5.2: the auth server then issues this device DPoP-bound tokens only.
  const dpopRequired = values['dpop-required'] === true;
  const common = { client_id: clientId, owner, scopes, dpop_required: dpopRequired ? 1 : 0 };
  const sharedOutput = { scope: registeredDeviceScopes({ scopes }).join(' '), ...(dpopRequired ? { dpop_bound_access_tokens: true } : {}) };

  if (typeof values.certificate === 'string') {
    const registration = await readNewDeviceCertificate(store, values.certificate, caFile);
    await insertDevice(store, { ...common, auth_method: registration.authMethod, secret_hash: null, jwks: null, certificate: registration.pem });
    await recordCommandEvent(store, 'device.added', { client_id: clientId, auth_method: registration.authMethod, owner, scope: scopes });
    const subject = registration.authMethod === 'tls_client_auth' ? { tls_client_auth_subject_dn: registration.subjectDn } : {};
    printJson({ client_id: clientId, token_endpoint_auth_method: registration.authMethod, ...subject, 'x5t#S256': registration.thumbprint, ...sharedOutput });
    return;
  }

  if (typeof values['public-key'] === 'string') {
    const jwk = await readPublicJwk(values['public-key']);
    await insertDevice(store, { ...common, auth_method: 'private_key_jwt', secret_hash: null, jwks: JSON.stringify({ keys: [jwk] }) });
    await recordCommandEvent(store, 'device.added', { client_id: clientId, auth_method: 'private_key_jwt', owner, scope: scopes });
    printJson({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', ...sharedOutput });
    return;
  }

  const clientSecret = crypto.randomBytes(32).toString('base64url');
  await insertDevice(store, { ...common, auth_method: 'client_secret_basic', secret_hash: hashClientSecret(clientSecret), jwks: null });
  await recordCommandEvent(store, 'device.added', { client_id: clientId, auth_method: 'client_secret_basic', owner, scope: scopes });
  // The only time the secret is shown: the database keeps its hash.
  printJson({ client_id: clientId, client_secret: clientSecret, ...sharedOutput });
}

async function approveDeviceCode(options: Readonly<Options>, store: Store, userCode: string, username: unknown): Promise<void> {
  if (typeof username !== 'string') {
    throw new CommandError('user_required', `Name the approving user with --user <username>.\n${devicesUsage}`, 2);
  }
  const user = await findUser(store, username);
  if (!user || user.disabled) {
    throw new CommandError('user_not_found', `User "${username}" does not exist or is disabled.`);
  }

  const provider = await createOfflineAuthServer(options, store);
  const normalized = userCode.toUpperCase().replace(/\W/g, '');
  const code = await provider.DeviceCode.findByUserCode(normalized, { ignoreExpiration: true });
  if (!code || code.isExpired) {
    throw new CommandError('user_code_invalid', `User code "${userCode}" is invalid or has expired; start again on the device.`);
  }
  if (code.accountId || code.error || code.inFlight) {
    throw new CommandError('user_code_used', `User code "${userCode}" was already approved or denied.`);
  }

  // Like the browser approval page: the registered scopes, narrowed to those the device asked for
  // when it named any.
  const device = await findDevice(store, String(code.clientId));
  const registered = device ? registeredDeviceScopes(device) : [];
  const requested = String(code.params?.scope ?? '').split(' ').filter(isDeviceScope);
  const granted = requested.length > 0 ? registered.filter((scope) => requested.includes(scope)) : registered;
  if (granted.length === 0) {
    throw new CommandError('scope_missing', `Device ${code.clientId} asked for no scope it is registered for; see "portcullis devices list".`);
  }

  // Use the resource the server resolved for the device's request, because this process's
  // --public-url may differ from the server's.
  const requestedResource = code.params?.resource;
  const resource = typeof requestedResource === 'string' ? requestedResource : gatewayAudience(options);
  const grant = new provider.Grant({ accountId: user.username, clientId: code.clientId });
  grant.addResourceScope(resource, granted.join(' '));
  const grantId = await grant.save();
  // Without `resource` on the code, the device_code grant issues an opaque token the gateway rejects.
  const scope = granted.join(' ');
  Object.assign(code, { accountId: user.username, grantId, authTime: epochSeconds(), resource, scope });
  await code.save();
  await recordCommandEvent(store, 'device_code.approved', { client_id: code.clientId, username: user.username, grant_id: grantId });
  printLine(`Approved device ${code.clientId} for user ${user.username}.`);
}

/** Runs `portcullis devices <action>` against the database in `--data-dir`. */
export async function runDevices(argv: string[]): Promise<void> {
  const { values, positionals } = parseOptionArgs(argv, {
    'public-key': { type: 'string' },
    certificate: { type: 'string' },
    'dpop-required': { type: 'boolean' },
    owner: { type: 'string' },
    scope: { type: 'string', multiple: true },
    user: { type: 'string' },
    json: { type: 'boolean' },
  });
  const [action, id] = positionals;
  const options = resolveOptions(values, process.env);

  if ((action === 'add' || action === 'remove') && (!id || !clientIdPattern.test(id))) {
    throw new CommandError('invalid_client_id', `Give a client id of 1 to 64 lower-case letters, digits, "_" or "-", starting with a letter or digit (it becomes a channel segment).\n${devicesUsage}`, 2);
  }
  if ((action === 'add' || action === 'remove') && id === gatewayClientId) {
    throw new CommandError('reserved_client_id', `"${gatewayClientId}" is the gateway's own client for browser sessions and cannot be added or removed as a device.`, 2);
  }
  // Subscribers tell operator messages apart by this publisher client id, so no token may carry it.
  if (action === 'add' && id === operatorPublisher.client_id) {
    throw new CommandError('reserved_client_id', `"${id}" is the publisher id of operator messages and cannot be a device.`, 2);
  }
  if (action === 'approve' && !id) {
    throw new CommandError('user_code_required', `Give the user code the device shows.\n${devicesUsage}`, 2);
  }

  const store = await openStore(options);
  try {
    switch (action) {
      case 'add':
        await addDevice(store, id, values, options.tlsClientCaFile);
        return;
      case 'list': {
        const rows = (await listDevices(store)).map((device) => ({
          client_id: device.client_id,
          auth_method: device.auth_method,
          dpop_required: device.dpop_required === 1,
          owner: device.owner,
          scope: registeredDeviceScopes(device).join(' '),
          created_at: isoTime(device.created_at),
        }));
        if (values.json) {
          printJson(rows);
          return;
        }
        rows.forEach((row) => printLine(`${row.client_id}\t${row.auth_method}\t${row.dpop_required ? 'dpop-required' : '-'}\t${row.owner ?? '-'}\t${row.created_at}\t${row.scope}`));
        return;
      }
      case 'remove': {
        // The event commits with the removal and makes every running server close the device's
        // live sockets with 4403 and forget that it admitted the device's tokens.
        const event = { kind: 'client', value: id, reason: 'device_removed', expiresAt: epochSeconds() } as const;
        if (!await deleteDevice(store, id, event)) {
          throw new CommandError('device_not_found', `Device "${id}" does not exist.`);
        }
        await recordCommandEvent(store, 'device.removed', { client_id: id });
        await announceThroughAdminSocket(options.dataDir, event);
        printLine(`Removed device ${id}; its tokens are refused and its live connections closed.`);
        return;
      }
      case 'approve':
        await approveDeviceCode(options, store, id, values.user);
        return;
      default:
        throw new CommandError('unknown_command', `Unknown devices command "${action ?? ''}".\n${devicesUsage}`, 2);
    }
  } finally {
    await store.destroy();
  }
}
