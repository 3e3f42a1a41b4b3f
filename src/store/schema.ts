import type { Generated } from 'kysely';

/** A stored oidc-provider artefact (session, grant, code, refresh token, device code, ...). */
export interface OidcPayloadTable {
  model: string;
  id: string;
  payload: string;
  grant_id: string | null;
  user_code: string | null;
  uid: string | null;
  /** Epoch seconds after which the row is ignored and may be pruned; null never expires. */
  expires_at: number | null;
  consumed_at: number | null;
}

/** A person who logs in through the browser. */
export interface UserTable {
  username: string;
  password_hash: string;
  disabled: number;
  /** 1 when the user may use the admin console and its API, else 0. */
  admin: Generated<number>;
  created_at: number;
}

/** A device: an OAuth client that authenticates with a secret or a registered public key. */
export interface DeviceTable {
  client_id: string;
  auth_method: 'client_secret_basic' | 'private_key_jwt' | 'tls_client_auth' | 'self_signed_tls_client_auth';
  /** `sha256:<hex>` of the client secret; null for `private_key_jwt` devices. */
  secret_hash: string | null;
  /** JSON JWK Set with the device's public key; null for secret devices. */
  jwks: string | null;
  owner: string | null;
  /** Space-separated channel scopes registered for the device; null means the defaults. */
  scopes: string | null;
  /** 1 when the device may only hold DPoP-bound tokens. */
  dpop_required: Generated<number>;
  /** PEM certificate for `tls_client_auth` and `self_signed_tls_client_auth`; null otherwise. */
  certificate: string | null;
  created_at: number;
}

/** An ES256 signing key of the auth server, as a private JWK. */
export interface SigningKeyTable {
  kid: string;
  private_jwk: string;
  status: 'active' | 'retired';
  created_at: number;
  /** Epoch seconds when a newer key replaced it; null while active. */
  retired_at: number | null;
}

/** A generated server-side secret (cookie keys, CSRF key, the gateway's client secret). */
export interface SecretTable {
  name: string;
  value: string;
  created_at: number;
}

/** A revoked grant; handshakes with tokens of it fail until `expires_at` (epoch seconds). */
export interface RevokedGrantTable {
  grant_id: string;
  revoked_at: number;
  expires_at: number;
}

/** A logged-in browser: the grant behind its cookie and the refresh token the gateway keeps for it. */
export interface BrowserSessionTable {
  grant_id: string;
  username: string;
  refresh_token: string;
  created_at: number;
  expires_at: number;
}

/** A revocation any process recorded; servers read new rows to close affected live sockets. */
export interface RevocationEventTable {
  id: Generated<number>;
  kind: 'grant' | 'client' | 'user' | 'token';
  /** Grant id, client id, username, or `<iss> <jti>` for a single token. */
  value: string;
  reason: string;
  created_at: number;
}

/** A single revoked access token, keyed by `jti` and issuer because signatures can be re-encoded. */
export interface RevokedTokenTable {
  jti: string;
  iss: string;
  revoked_at: number;
  expires_at: number;
}

/** A DPoP proof already used, by the gateway's replay key, until its window closes (epoch seconds). */
export interface UsedProofTable {
  key: string;
  expires_at: number;
}

/** One stored security event of the audit trail. */
export interface AuditEventTable {
  id: Generated<number>;
  /** Epoch milliseconds of the event. */
  time: number;
  /** Stable event name, such as `login.failed`. */
  event: string;
  /** pino level number: 30 info, 40 warn, 50 error. */
  level: number;
  /** JSON object with the event's allow-listed fields only. */
  fields: string;
}

/** Every table of the Portcullis database, for kysely. */
export interface Database {
  oidc_payloads: OidcPayloadTable;
  users: UserTable;
  devices: DeviceTable;
  signing_keys: SigningKeyTable;
  secrets: SecretTable;
  revoked_grants: RevokedGrantTable;
  browser_sessions: BrowserSessionTable;
  revocation_events: RevocationEventTable;
  revoked_tokens: RevokedTokenTable;
  audit_events: AuditEventTable;
  used_proofs: UsedProofTable;
}
