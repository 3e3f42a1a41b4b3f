import fs from 'node:fs';
import { parseArgs } from 'node:util';

import { OptionsError, validateOptions, type Options } from './options.ts';

interface OptionSource {
  option: keyof Options;
  flag: string;
  env: string;
  list?: boolean;
}

/** Flag and environment variable of each option, besides `--config FILE`. */
export const optionSources: readonly OptionSource[] = [
  { option: 'role', flag: 'role', env: 'PORTCULLIS_ROLE' },
  { option: 'host', flag: 'host', env: 'PORTCULLIS_HOST' },
  { option: 'port', flag: 'port', env: 'PORTCULLIS_PORT' },
  { option: 'plainPort', flag: 'plain-port', env: 'PORTCULLIS_PLAIN_PORT' },
  { option: 'metricsListen', flag: 'metrics-listen', env: 'PORTCULLIS_METRICS_LISTEN' },
  { option: 'publicUrl', flag: 'public-url', env: 'PORTCULLIS_PUBLIC_URL' },
  { option: 'dataDir', flag: 'data-dir', env: 'PORTCULLIS_DATA_DIR' },
  { option: 'databaseUrl', flag: 'database-url', env: 'PORTCULLIS_DATABASE_URL' },
  { option: 'redisUrl', flag: 'redis-url', env: 'PORTCULLIS_REDIS_URL' },
  { option: 'redisKeyPrefix', flag: 'redis-key-prefix', env: 'PORTCULLIS_REDIS_KEY_PREFIX' },
  { option: 'tlsCertFile', flag: 'tls-cert', env: 'PORTCULLIS_TLS_CERT' },
  { option: 'tlsKeyFile', flag: 'tls-key', env: 'PORTCULLIS_TLS_KEY' },
  { option: 'tlsClientCaFile', flag: 'tls-client-ca', env: 'PORTCULLIS_TLS_CLIENT_CA' },
  { option: 'tlsClientCertHeader', flag: 'tls-client-cert-header', env: 'PORTCULLIS_TLS_CLIENT_CERT_HEADER' },
  { option: 'accessTokenTtlSeconds', flag: 'access-token-ttl', env: 'PORTCULLIS_ACCESS_TOKEN_TTL' },
  { option: 'refreshTokenTtlSeconds', flag: 'refresh-token-ttl', env: 'PORTCULLIS_REFRESH_TOKEN_TTL' },
  { option: 'allowedOrigins', flag: 'allowed-origin', env: 'PORTCULLIS_ALLOWED_ORIGINS', list: true },
  { option: 'trustedProxies', flag: 'trusted-proxy', env: 'PORTCULLIS_TRUSTED_PROXIES', list: true },
  { option: 'clockLeewaySeconds', flag: 'clock-leeway', env: 'PORTCULLIS_CLOCK_LEEWAY' },
  { option: 'expiryWarningSeconds', flag: 'expiry-warning', env: 'PORTCULLIS_EXPIRY_WARNING' },
  { option: 'handshakeTimeoutMs', flag: 'handshake-timeout', env: 'PORTCULLIS_HANDSHAKE_TIMEOUT' },
  { option: 'maxPayloadBytes', flag: 'max-payload', env: 'PORTCULLIS_MAX_PAYLOAD' },
  { option: 'maxBufferedBytes', flag: 'max-buffered', env: 'PORTCULLIS_MAX_BUFFERED' },
  { option: 'maxHeaderBytes', flag: 'max-header-size', env: 'PORTCULLIS_MAX_HEADER_SIZE' },
  { option: 'perMessageDeflate', flag: 'permessage-deflate', env: 'PORTCULLIS_PERMESSAGE_DEFLATE' },
  { option: 'maxSubscriptions', flag: 'max-subscriptions', env: 'PORTCULLIS_MAX_SUBSCRIPTIONS' },
  { option: 'messageRatePerSecond', flag: 'message-rate', env: 'PORTCULLIS_MESSAGE_RATE' },
  { option: 'heartbeatIntervalMs', flag: 'heartbeat-interval', env: 'PORTCULLIS_HEARTBEAT_INTERVAL' },
  { option: 'maxConnectionsPerClient', flag: 'max-connections-per-client', env: 'PORTCULLIS_MAX_CONNECTIONS_PER_CLIENT' },
  { option: 'maxConnectionsPerUser', flag: 'max-connections-per-user', env: 'PORTCULLIS_MAX_CONNECTIONS_PER_USER' },
  { option: 'handshakesPerIpPerMinute', flag: 'handshake-rate-ip', env: 'PORTCULLIS_HANDSHAKE_RATE_IP' },
  { option: 'handshakesPerClientPerMinute', flag: 'handshake-rate-client', env: 'PORTCULLIS_HANDSHAKE_RATE_CLIENT' },
  { option: 'maxPendingHandshakes', flag: 'max-pending-handshakes', env: 'PORTCULLIS_MAX_PENDING_HANDSHAKES' },
  { option: 'webhookUrl', flag: 'webhook-url', env: 'PORTCULLIS_WEBHOOK_URL' },
  { option: 'webhookSecretFile', flag: 'webhook-secret-file', env: 'PORTCULLIS_WEBHOOK_SECRET_FILE' },
  { option: 'drainWindowMs', flag: 'drain-window', env: 'PORTCULLIS_DRAIN_WINDOW' },
  { option: 'issuer', flag: 'issuer', env: 'PORTCULLIS_ISSUER' },
  { option: 'jwksUrl', flag: 'jwks-url', env: 'PORTCULLIS_JWKS_URL' },
  { option: 'issuerCaFile', flag: 'issuer-ca', env: 'PORTCULLIS_ISSUER_CA' },
  { option: 'audience', flag: 'audience', env: 'PORTCULLIS_AUDIENCE' },
  { option: 'tokenAlgorithms', flag: 'token-algorithm', env: 'PORTCULLIS_TOKEN_ALGORITHMS', list: true },
  { option: 'acceptJwtType', flag: 'accept-jwt-type', env: 'PORTCULLIS_ACCEPT_JWT_TYPE' },
  { option: 'clientIdClaim', flag: 'client-id-claim', env: 'PORTCULLIS_CLIENT_ID_CLAIM' },
  { option: 'scopeClaim', flag: 'scope-claim', env: 'PORTCULLIS_SCOPE_CLAIM' },
  { option: 'tokenIdClaim', flag: 'token-id-claim', env: 'PORTCULLIS_TOKEN_ID_CLAIM' },
  { option: 'auditRetentionDays', flag: 'audit-retention-days', env: 'PORTCULLIS_AUDIT_RETENTION_DAYS' },
  { option: 'logLevel', flag: 'log-level', env: 'PORTCULLIS_LOG_LEVEL' },
];

/** Builds the `parseArgs` option table for every flag above plus `--config`. */
export function optionFlags(): Record<string, { type: 'string'; multiple?: boolean }> {
  const flags: Record<string, { type: 'string'; multiple?: boolean }> = { config: { type: 'string' } };
  for (const source of optionSources) {
    flags[source.flag] = source.list ? { type: 'string', multiple: true } : { type: 'string' };
  }
  return flags;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new OptionsError(`--config ${file} could not be read (${(error as NodeJS.ErrnoException).code}); check the path.`);
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new OptionsError(`--config ${file} is not valid JSON: ${(error as Error).message}. Fix the file, for example {"port": 8443}.`);
  }

  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new OptionsError(`--config ${file} must hold a JSON object of options, for example {"port": 8443}.`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * Resolves options from, in increasing precedence: defaults, `--config FILE` (or
 * `PORTCULLIS_CONFIG`), `PORTCULLIS_*` environment variables, and flags in `values`.
 */
export function resolveOptions(values: Record<string, unknown>, env: NodeJS.ProcessEnv): Readonly<Options> {
  const configFile = (values.config as string | undefined) ?? env.PORTCULLIS_CONFIG;
  const input: Record<string, unknown> = configFile ? readConfigFile(configFile) : {};

  for (const source of optionSources) {
    const fromEnv = env[source.env];
    if (fromEnv !== undefined && fromEnv !== '') {
      input[source.option] = source.list ? fromEnv.split(',').map((item) => item.trim()).filter(Boolean) : fromEnv;
    }

    const fromFlag = values[source.flag];
    if (fromFlag !== undefined) {
      input[source.option] = fromFlag;
    }
  }

  return validateOptions(input);
}

/** Parses `argv` for a command that takes server options; unknown flags are an `OptionsError`. */
export function parseOptionArgs(argv: string[], extra: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {}) {
  try {
    return parseArgs({ args: argv, options: { ...optionFlags(), ...extra }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new OptionsError(`${(error as Error).message}. Run "portcullis help" for the list of flags.`);
  }
}
