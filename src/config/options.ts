import net from 'node:net';
import path from 'node:path';

import { parseMetricsListen } from '../metrics/listen-address.ts';
import {
  normalizeOrigin,
  OptionsError,
  requireBoolean,
  requireCaBundleFile,
  requireHeaderName,
  requireHttpsUrl,
  requireInteger,
  requireKeyPrefix,
  requireServiceUrl,
  requireString,
  requireStringList,
  requireWebhookUrl,
} from './value-checks.ts';

export { normalizeOrigin, OptionsError };

/** Signature algorithms a gateway may accept from an external issuer; the built-in auth server signs with ES256. */
export const supportedAlgorithms = ['ES256', 'EdDSA', 'RS256', 'PS256'] as const;

/** The part a process serves: everything, only the auth server, or only the WebSocket gateway. */
export type Role = 'all' | 'auth' | 'gateway';

/** Start-up options of a Portcullis server, after defaults are applied and validated. */
export interface Options {
  /** `all` serves the auth server and the gateway; `auth` and `gateway` split them across processes. Default `all`. */
  role: Role;
  /** Listen address. Default `127.0.0.1`. */
  host: string;
  /** Listen port of the HTTPS listener. Default `8443`. */
  port: number;
  /**
   * Port of an extra plain-HTTP listener on `host`, for a TLS-terminating proxy listed in
   * `trustedProxies`. 0 picks a free port. Default none.
   */
  plainPort: number | null;
  /**
   * `HOST:PORT` of a plain-HTTP listener that serves `GET /metrics` without a token; the host must be
   * a loopback address. Default none.
   */
  metricsListen: string | null;
  /** Public origin browsers and devices use; also the OAuth issuer. Default `https://localhost:8443`. */
  publicUrl: string;
  /** Directory for the SQLite database, TLS material and keys. Default `./.portcullis`. */
  dataDir: string;
  /** `postgres://` URL; when set, every table lives in PostgreSQL instead of SQLite. Default none. */
  databaseUrl: string | null;
  /** `redis://` or `rediss://` URL; when set, messages, revocations and limits cross nodes. Default none. */
  redisUrl: string | null;
  /** Start of every Redis key and pub/sub channel name, so that deployments can share one Redis. Default `portcullis:`. */
  redisKeyPrefix: string;
  /** PEM certificate chain; with `tlsKeyFile`, replaces the generated development certificate. */
  tlsCertFile: string | null;
  /** PEM private key matching `tlsCertFile`. */
  tlsKeyFile: string | null;
  /**
   * PEM bundle of the CAs that sign device certificates. When set, the HTTPS listener requests an
   * optional client certificate and the auth server issues certificate-bound tokens (RFC 8705).
   * Default none.
   */
  tlsClientCaFile: string | null;
  /**
   * Lower-case name of the header in which a TLS-terminating proxy in `trustedProxies` forwards the
   * client certificate (RFC 9440 `Client-Cert`, or nginx's URL-encoded PEM). Default none.
   */
  tlsClientCertHeader: string | null;
  /** Lifetime of access tokens in seconds. Default 600. */
  accessTokenTtlSeconds: number;
  /** Lifetime of refresh tokens in seconds. Default 14 days. */
  refreshTokenTtlSeconds: number;
  /** Origins allowed on browser handshakes (scheme, host and port). Default: the public origin only. */
  allowedOrigins: string[];
  /** Peer addresses whose `X-Forwarded-Proto: https` is believed. Default: none. */
  trustedProxies: string[];
  /** Clock leeway for `exp`/`nbf`/`iat` checks, in seconds. Default 30, at most 60. */
  clockLeewaySeconds: number;
  /** Seconds before a connection's token expires at which it is sent an `expiring` frame. Default 30. */
  expiryWarningSeconds: number;
  /** Time a client has to finish the HTTP request, including a handshake, in milliseconds. Default 10000. */
  handshakeTimeoutMs: number;
  /** Largest accepted WebSocket message in bytes. Default 65536. */
  maxPayloadBytes: number;
  /** Outgoing bytes a socket may have queued before it is closed as a slow consumer (1013). Default 1 MiB. */
  maxBufferedBytes: number;
  /** Largest accepted HTTP header section in bytes. Default 16384. */
  maxHeaderBytes: number;
  /** Negotiate permessage-deflate; the message limit then applies to the inflated size. Default false. */
  perMessageDeflate: boolean;
  /** Channel subscriptions one connection may hold. Default 100. */
  maxSubscriptions: number;
  /** Messages per second one connection may send (token bucket, burst of the same size). Default 50. */
  messageRatePerSecond: number;
  /** Interval of server pings in milliseconds; a peer that misses two pongs is dropped. Default 25000. */
  heartbeatIntervalMs: number;
  /** Open connections one device client id may hold. Default 5. */
  maxConnectionsPerClient: number;
  /** Open browser connections one user may hold. Default 20. */
  maxConnectionsPerUser: number;
  /** Handshakes one peer address may start per minute. Default 300. */
  handshakesPerIpPerMinute: number;
  /** Handshakes one client id may start per minute. Default 30. */
  handshakesPerClientPerMinute: number;
  /** Handshakes being checked at the same time before new ones get 503. Default 256. */
  maxPendingHandshakes: number;
  /** HTTPS URL that receives every message published over WebSocket, HMAC-signed. Default none. */
  webhookUrl: string | null;
  /** File holding the webhook HMAC secret; without it one is generated in the data dir. */
  webhookSecretFile: string | null;
  /** Window over which the reconnect hints of a shutdown are spread, in milliseconds. Default 10000. */
  drainWindowMs: number;
  /** External issuer whose access tokens a `gateway` accepts instead of the built-in auth server's. Default none. */
  issuer: string | null;
  /** JWKS URL of the external issuer; default: `jwks_uri` from its metadata. */
  jwksUrl: string | null;
  /** PEM file of CAs trusted for the issuer's metadata and JWKS, besides the system store. Default none. */
  issuerCaFile: string | null;
  /** Audience an external issuer's tokens must carry. Required with `issuer`. */
  audience: string | null;
  /** Signature algorithms accepted from an external issuer. Default ES256, EdDSA, RS256, PS256. */
  tokenAlgorithms: string[];
  /** Accept `typ: JWT` as well as `at+jwt` from an external issuer. Default false. */
  acceptJwtType: boolean;
  /** Claim of an external issuer's token that contains the client id. Default `client_id`. */
  clientIdClaim: string;
  /** Claim of an external issuer's token that contains the scopes (string or array). Default `scope`. */
  scopeClaim: string;
  /** Claim of an external issuer's token that identifies the token, for revocation. Default `jti`. */
  tokenIdClaim: string;
  /** Days a security event stays in the audit trail before the background pruning deletes it. Default 30. */
  auditRetentionDays: number;
  /** pino log level. Default `info`. */
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

/** Default values of every option; `allowedOrigins` empty means "the public origin". */
export const defaultOptions: Readonly<Options> = Object.freeze({
  role: 'all',
  host: '127.0.0.1',
  port: 8443,
  plainPort: null,
  metricsListen: null,
  publicUrl: 'https://localhost:8443',
  dataDir: './.portcullis',
  databaseUrl: null,
  redisUrl: null,
  redisKeyPrefix: 'portcullis:',
  tlsCertFile: null,
  tlsKeyFile: null,
  tlsClientCaFile: null,
  tlsClientCertHeader: null,
  accessTokenTtlSeconds: 600,
  refreshTokenTtlSeconds: 14 * 24 * 3600,
  allowedOrigins: [],
  trustedProxies: [],
  clockLeewaySeconds: 30,
  expiryWarningSeconds: 30,
  handshakeTimeoutMs: 10_000,
  maxPayloadBytes: 64 * 1024,
  maxBufferedBytes: 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  perMessageDeflate: false,
  maxSubscriptions: 100,
  messageRatePerSecond: 50,
  heartbeatIntervalMs: 25_000,
  maxConnectionsPerClient: 5,
  maxConnectionsPerUser: 20,
  handshakesPerIpPerMinute: 300,
  handshakesPerClientPerMinute: 30,
  maxPendingHandshakes: 256,
  webhookUrl: null,
  webhookSecretFile: null,
  drainWindowMs: 10_000,
  issuer: null,
  jwksUrl: null,
  issuerCaFile: null,
  audience: null,
  tokenAlgorithms: [...supportedAlgorithms],
  acceptJwtType: false,
  clientIdClaim: 'client_id',
  scopeClaim: 'scope',
  tokenIdClaim: 'jti',
  auditRetentionDays: 30,
  logLevel: 'info',
});

const logLevels = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

type IssuerTrust = Pick<Options, 'issuer' | 'jwksUrl' | 'issuerCaFile' | 'audience' | 'tokenAlgorithms' | 'acceptJwtType' | 'clientIdClaim' | 'scopeClaim' | 'tokenIdClaim'>;

/** Checks the options that make a gateway trust an external issuer; they only make sense together. */
function validateIssuerTrust(merged: Record<string, unknown>, role: Role): IssuerTrust {
  const issuer = merged.issuer === null ? null : requireHttpsUrl('issuer (--issuer)', merged.issuer);
  const audience = merged.audience === null ? null : requireString('audience (--audience)', merged.audience);
  const algorithms = requireStringList('tokenAlgorithms (--token-algorithm)', merged.tokenAlgorithms);
  const unsupported = algorithms.filter((algorithm) => !(supportedAlgorithms as readonly string[]).includes(algorithm));
  if (unsupported.length > 0 || algorithms.length === 0) {
    throw new OptionsError(`tokenAlgorithms (--token-algorithm) accepts only ${supportedAlgorithms.join(', ')}; ${JSON.stringify(unsupported)} is not allowed (never none or an HMAC algorithm).`);
  }
  const claimName = (name: string, value: unknown) => {
    const text = requireString(name, value);
    if (!/^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/.test(text)) {
      throw new OptionsError(`${name} must be a claim name such as client_id or azp, got ${JSON.stringify(text)}.`);
    }
    return text;
  };

  const trust: IssuerTrust = {
    issuer,
    jwksUrl: merged.jwksUrl === null ? null : requireHttpsUrl('jwksUrl (--jwks-url)', merged.jwksUrl),
    issuerCaFile: merged.issuerCaFile === null ? null : requireString('issuerCaFile (--issuer-ca)', merged.issuerCaFile),
    audience,
    tokenAlgorithms: Object.freeze([...new Set(algorithms)]) as string[],
    acceptJwtType: requireBoolean('acceptJwtType (--accept-jwt-type)', merged.acceptJwtType),
    clientIdClaim: claimName('clientIdClaim (--client-id-claim)', merged.clientIdClaim),
    scopeClaim: claimName('scopeClaim (--scope-claim)', merged.scopeClaim),
    tokenIdClaim: claimName('tokenIdClaim (--token-id-claim)', merged.tokenIdClaim),
  };

  if (issuer === null) {
    const external = (['jwksUrl', 'issuerCaFile', 'audience', 'tokenAlgorithms', 'acceptJwtType', 'clientIdClaim', 'scopeClaim', 'tokenIdClaim'] as const)
      .filter((key) => JSON.stringify(trust[key]) !== JSON.stringify(defaultOptions[key]));
    if (external.length > 0) {
      throw new OptionsError(`${external.join(', ')} ${external.length === 1 ? 'applies' : 'apply'} only with issuer (--issuer), which names an external token issuer.`);
    }
    return trust;
  }
  if (role !== 'gateway') {
    throw new OptionsError('issuer (--issuer) needs role (--role) gateway: a process that runs the built-in auth server accepts only its own tokens.');
  }
  if (audience === null) {
    throw new OptionsError('audience (--audience) is required with issuer (--issuer): name the audience your issuer puts in tokens meant for this gateway.');
  }
  return trust;
}

/**
 * Checks the plain-HTTP listener. It routes only requests that a trusted proxy forwards with
 * `X-Forwarded-Proto: https`, so without such a proxy it would reject everything.
 */
function validatePlainPort(value: unknown, port: number, trustedProxies: readonly string[]): number | null {
  if (value === null) {
    return null;
  }

  const plainPort = requireInteger('plainPort (--plain-port)', value, 0, 65535);
  if (trustedProxies.length === 0) {
    throw new OptionsError('plainPort (--plain-port) needs trustedProxies (--trusted-proxy), because the plain-HTTP listener accepts only requests that a listed TLS-terminating proxy forwards with X-Forwarded-Proto: https. Add the proxy\'s address with --trusted-proxy.');
  }
  // The listener compares the peer with single addresses, as the handshake's transport check does.
  if (!trustedProxies.some((entry) => net.isIP(entry) !== 0)) {
    throw new OptionsError(`plainPort (--plain-port) needs at least one single IP address in trustedProxies (--trusted-proxy), because the plain-HTTP listener does not match CIDR ranges; got ${JSON.stringify(trustedProxies)}.`);
  }
  if (plainPort !== 0 && plainPort === port) {
    throw new OptionsError(`plainPort (--plain-port) must differ from port (--port), got ${plainPort} for both.`);
  }
  return plainPort;
}

type ClientCertificates = Pick<Options, 'tlsClientCaFile' | 'tlsClientCertHeader'>;

/**
 * Checks the client certificate options. The header is believed only from a trusted proxy, and a
 * certificate is of use only when the auth server accepts certificates, so it needs both.
 */
function validateClientCertificates(merged: Record<string, unknown>, trustedProxies: readonly string[]): ClientCertificates {
  const tlsClientCaFile = merged.tlsClientCaFile === null ? null : requireCaBundleFile('tlsClientCaFile (--tls-client-ca)', merged.tlsClientCaFile);
  if (merged.tlsClientCertHeader === null) {
    return { tlsClientCaFile, tlsClientCertHeader: null };
  }

  const tlsClientCertHeader = requireHeaderName('tlsClientCertHeader (--tls-client-cert-header)', merged.tlsClientCertHeader);
  if (trustedProxies.length === 0) {
    throw new OptionsError('tlsClientCertHeader (--tls-client-cert-header) needs trustedProxies (--trusted-proxy), because the header is believed only from a listed TLS-terminating proxy. Add the proxy\'s address with --trusted-proxy.');
  }
  if (tlsClientCaFile === null) {
    throw new OptionsError('tlsClientCertHeader (--tls-client-cert-header) needs tlsClientCaFile (--tls-client-ca), which turns on certificate-bound tokens. Add --tls-client-ca with the CAs that sign device certificates.');
  }
  return { tlsClientCaFile, tlsClientCertHeader };
}

// Kept as the text the operator gave, after the loopback check, so that errors and docs show one form.
function validateMetricsListen(value: unknown): string {
  parseMetricsListen(value);
  return value as string;
}

/** Checks `input` option by option, fills defaults and returns a frozen `Options`. */
export function validateOptions(input: Record<string, unknown>): Readonly<Options> {
  const known = new Set(Object.keys(defaultOptions));
  for (const key of Object.keys(input)) {
    if (!known.has(key)) {
      throw new OptionsError(`Unknown option "${key}"; known options are: ${[...known].join(', ')}.`);
    }
  }

  const merged = { ...defaultOptions, ...input } as Record<string, unknown>;
  const publicUrl = normalizeOrigin('publicUrl (--public-url)', requireString('publicUrl (--public-url)', merged.publicUrl));
  const allowedOrigins = requireStringList('allowedOrigins (--allowed-origin)', merged.allowedOrigins)
    .map((origin) => normalizeOrigin('allowedOrigins (--allowed-origin)', origin));

  const tlsCertFile = merged.tlsCertFile === null ? null : requireString('tlsCertFile (--tls-cert)', merged.tlsCertFile);
  const tlsKeyFile = merged.tlsKeyFile === null ? null : requireString('tlsKeyFile (--tls-key)', merged.tlsKeyFile);
  if ((tlsCertFile === null) !== (tlsKeyFile === null)) {
    throw new OptionsError('tlsCertFile (--tls-cert) and tlsKeyFile (--tls-key) must be given together.');
  }

  const logLevel = requireString('logLevel (--log-level)', merged.logLevel);
  if (!logLevels.has(logLevel)) {
    throw new OptionsError(`logLevel (--log-level) must be one of ${[...logLevels].join(', ')}, got ${JSON.stringify(logLevel)}.`);
  }

  const roles = ['all', 'auth', 'gateway'];
  const role = requireString('role (--role)', merged.role);
  if (!roles.includes(role)) {
    throw new OptionsError(`role (--role) must be one of ${roles.join(', ')}, got ${JSON.stringify(role)}.`);
  }
  const issuerTrust = validateIssuerTrust(merged, role as Role);
  const port = requireInteger('port (--port)', merged.port, 0, 65535);
  const trustedProxies = requireStringList('trustedProxies (--trusted-proxy)', merged.trustedProxies);

  return Object.freeze({
    role: role as Role,
    ...issuerTrust,
    host: requireString('host (--host)', merged.host),
    port,
    plainPort: validatePlainPort(merged.plainPort, port, trustedProxies),
    metricsListen: merged.metricsListen === null ? null : validateMetricsListen(merged.metricsListen),
    publicUrl,
    dataDir: path.resolve(requireString('dataDir (--data-dir)', merged.dataDir)),
    databaseUrl: merged.databaseUrl === null ? null : requireServiceUrl('databaseUrl (--database-url)', merged.databaseUrl, ['postgres://', 'postgresql://']),
    redisUrl: merged.redisUrl === null ? null : requireServiceUrl('redisUrl (--redis-url)', merged.redisUrl, ['redis://', 'rediss://']),
    redisKeyPrefix: requireKeyPrefix('redisKeyPrefix (--redis-key-prefix)', merged.redisKeyPrefix),
    tlsCertFile,
    tlsKeyFile,
    ...validateClientCertificates(merged, trustedProxies),
    accessTokenTtlSeconds: requireInteger('accessTokenTtlSeconds (--access-token-ttl)', merged.accessTokenTtlSeconds, 1, 86_400),
    refreshTokenTtlSeconds: requireInteger('refreshTokenTtlSeconds (--refresh-token-ttl)', merged.refreshTokenTtlSeconds, 60, 365 * 86_400),
    allowedOrigins: Object.freeze(allowedOrigins.length > 0 ? allowedOrigins : [publicUrl]) as string[],
    trustedProxies: Object.freeze(trustedProxies) as string[],
    clockLeewaySeconds: requireInteger('clockLeewaySeconds (--clock-leeway)', merged.clockLeewaySeconds, 0, 60),
    expiryWarningSeconds: requireInteger('expiryWarningSeconds (--expiry-warning)', merged.expiryWarningSeconds, 0, 3600),
    handshakeTimeoutMs: requireInteger('handshakeTimeoutMs (--handshake-timeout)', merged.handshakeTimeoutMs, 100, 120_000),
    maxPayloadBytes: requireInteger('maxPayloadBytes (--max-payload)', merged.maxPayloadBytes, 128, 16 * 1024 * 1024),
    maxBufferedBytes: requireInteger('maxBufferedBytes (--max-buffered)', merged.maxBufferedBytes, 64 * 1024, 256 * 1024 * 1024),
    maxHeaderBytes: requireInteger('maxHeaderBytes (--max-header-size)', merged.maxHeaderBytes, 1024, 1024 * 1024),
    perMessageDeflate: requireBoolean('perMessageDeflate (--permessage-deflate)', merged.perMessageDeflate),
    maxSubscriptions: requireInteger('maxSubscriptions (--max-subscriptions)', merged.maxSubscriptions, 1, 10_000),
    messageRatePerSecond: requireInteger('messageRatePerSecond (--message-rate)', merged.messageRatePerSecond, 1, 100_000),
    heartbeatIntervalMs: requireInteger('heartbeatIntervalMs (--heartbeat-interval)', merged.heartbeatIntervalMs, 100, 600_000),
    maxConnectionsPerClient: requireInteger('maxConnectionsPerClient (--max-connections-per-client)', merged.maxConnectionsPerClient, 1, 100_000),
    maxConnectionsPerUser: requireInteger('maxConnectionsPerUser (--max-connections-per-user)', merged.maxConnectionsPerUser, 1, 100_000),
    handshakesPerIpPerMinute: requireInteger('handshakesPerIpPerMinute (--handshake-rate-ip)', merged.handshakesPerIpPerMinute, 1, 1_000_000),
    handshakesPerClientPerMinute: requireInteger('handshakesPerClientPerMinute (--handshake-rate-client)', merged.handshakesPerClientPerMinute, 1, 1_000_000),
    maxPendingHandshakes: requireInteger('maxPendingHandshakes (--max-pending-handshakes)', merged.maxPendingHandshakes, 1, 100_000),
    webhookUrl: merged.webhookUrl === null ? null : requireWebhookUrl('webhookUrl (--webhook-url)', merged.webhookUrl),
    webhookSecretFile: merged.webhookSecretFile === null ? null : requireString('webhookSecretFile (--webhook-secret-file)', merged.webhookSecretFile),
    drainWindowMs: requireInteger('drainWindowMs (--drain-window)', merged.drainWindowMs, 0, 600_000),
    auditRetentionDays: requireInteger('auditRetentionDays (--audit-retention-days)', merged.auditRetentionDays, 1, 3650),
    logLevel: logLevel as Options['logLevel'],
  });
}
