import crypto, { X509Certificate } from 'node:crypto';

import type { Insertable, Selectable } from 'kysely';
import { exportJWK } from 'jose';
import type { AdapterPayload } from 'oidc-provider';

import { subjectDn } from '../tls/client-ca.ts';
import { epochSeconds, type Store } from './database.ts';
import { recordRevocationIn, type Revocation } from './revocation-events.ts';
import type { DeviceTable } from './schema.ts';

/** Grant types a device may use: its own credentials, the device flow, and refresh. */
export const deviceGrantTypes = [
  'client_credentials',
  'urn:ietf:params:oauth:grant-type:device_code',
  'refresh_token',
];

/**
 * Client ids of devices: a lower-case letter or digit first, then lower-case letters, digits, `_`
 * and `-`; 1 to 64 characters. An id is one channel segment, as in `devices/<client-id>/telemetry`.
 */
export const clientIdPattern = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Hashes a client secret for storage; secrets are 256-bit random, so one SHA-256 is enough. */
export function hashClientSecret(secret: string): string {
  return `sha256:${crypto.createHash('sha256').update(secret, 'utf8').digest('hex')}`;
}

/** Compares a presented client secret with a stored hash in constant time. */
export function clientSecretMatches(storedHash: string, presented: string): boolean {
  const expected = Buffer.from(storedHash, 'utf8');
  const actual = Buffer.from(hashClientSecret(presented), 'utf8');
  return expected.length === actual.length && crypto.timingSafeEqual(expected, actual);
}

/** A stored device row. */
export type Device = Selectable<DeviceTable>;

/** Registers a device. The caller generated the secret and keeps it; only its hash is stored. */
export async function insertDevice(store: Store, device: Omit<Insertable<DeviceTable>, 'created_at'>): Promise<void> {
  const row = { ...device, scopes: device.scopes ?? null, dpop_required: device.dpop_required ?? 0, certificate: device.certificate ?? null, created_at: epochSeconds() };
  await store.insertInto('devices').values(row).execute();
}

/** Looks up one device row by client id. */
export async function findDevice(store: Store, clientId: string): Promise<Device | undefined> {
  return store.selectFrom('devices').selectAll().where('client_id', '=', clientId).executeTakeFirst();
}

/** Lists all devices, oldest first. */
export async function listDevices(store: Store): Promise<Device[]> {
  return store.selectFrom('devices').selectAll().orderBy('created_at').orderBy('client_id').execute();
}

/**
 * Removes a device and every OAuth artefact issued to it; returns false when it did not exist.
 * `event` is recorded in the same transaction, so the removal never commits without it.
 */
export async function deleteDevice(store: Store, clientId: string, event?: Revocation): Promise<boolean> {
  return store.transaction().execute(async (trx) => {
    const result = await trx.deleteFrom('devices').where('client_id', '=', clientId).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) {
      return false;
    }
    if (event) {
      await recordRevocationIn(trx, event);
    }

    // Artefacts carry the client id inside their JSON payload only.
    const rows = await trx.selectFrom('oidc_payloads').select(['model', 'id', 'payload', 'grant_id']).execute();
    for (const row of rows) {
      const payload = JSON.parse(row.payload) as { clientId?: string };
      if (payload.clientId !== clientId) {
        continue;
      }
      await trx.deleteFrom('oidc_payloads').where('model', '=', row.model).where('id', '=', row.id).execute();
    }
    return true;
  });
}

/** Returns oidc-provider client metadata for a registered device, or undefined. */
export async function findDeviceClient(store: Store, clientId: string): Promise<AdapterPayload | undefined> {
  const device = await findDevice(store, clientId);
  if (!device) {
    return undefined;
  }

  const metadata: AdapterPayload = {
    client_id: device.client_id,
    grant_types: deviceGrantTypes,
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: device.auth_method,
    // RFC 9449 section 5.2: the auth server then refuses token requests without a DPoP proof.
    dpop_bound_access_tokens: device.dpop_required === 1,
  };
  if (device.auth_method === 'client_secret_basic') {
    metadata.client_secret = device.secret_hash ?? undefined;
  } else if (device.auth_method === 'private_key_jwt') {
    metadata.jwks = JSON.parse(device.jwks ?? '{"keys":[]}');
  } else {
    Object.assign(metadata, await certificateClientMetadata(device));
  }
  return metadata;
}

/**
 * Builds the client metadata of a device that authenticates with mutual TLS (RFC 8705 section 2)
 * from its stored certificate. A `tls_client_auth` device gets the certificate's subject DN. A
 * `self_signed_tls_client_auth` device gets a JWK Set whose one key carries the certificate in
 * `x5c`, from which oidc-provider computes the thumbprint it compares. Access tokens are bound to
 * the certificate unless the device must use DPoP, because oidc-provider refuses to bind one token
 * to both.
 */
export async function certificateClientMetadata(device: Device): Promise<AdapterPayload> {
  if (device.certificate === null) {
    throw new Error(`device ${device.client_id} uses ${device.auth_method} but has no stored certificate`);
  }
  const certificate = new X509Certificate(device.certificate);
  const metadata: AdapterPayload = { tls_client_certificate_bound_access_tokens: device.dpop_required !== 1 };

  if (device.auth_method === 'tls_client_auth') {
    metadata.tls_client_auth_subject_dn = subjectDn(certificate);
    return metadata;
  }
  const jwk = await exportJWK(certificate.publicKey);
  metadata.jwks = { keys: [{ ...jwk, x5c: [certificate.raw.toString('base64')] }] };
  return metadata;
}
