import crypto from 'node:crypto';
import type http from 'node:http';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

import Fastify from 'fastify';
import { sql } from 'kysely';
import type { Logger } from 'pino';

import { startAuditPruning } from './audit/audit-retention.ts';
import { AuditWriter } from './audit/audit-writer.ts';
import { SigningKeyRing } from './auth/key-ring.ts';
import { LoginThrottle } from './auth/login-throttle.ts';
import { createRequestContextTracker } from './auth/request-context.ts';
import { createAuthServer, gatewayAudience, gatewayClientId } from './auth/provider.ts';
import { dpopAlgorithms } from './auth/dpop.ts';
import type { Options } from './config/options.ts';
import { ChannelBroker } from './channels/broker.ts';
import { startCluster } from './cluster/cluster.ts';
import { ThrottledWarning } from './cluster/throttled-warning.ts';
import { publishAsOperator } from './channels/publish.ts';
import { createWebhookDispatcher } from './channels/webhook.ts';
import { startAdminSocket } from './gateway/admin-socket.ts';
import { parseMetricsListen } from './metrics/listen-address.ts';
import { startMetricsListener } from './metrics/metrics-listener.ts';
import { registerMetricsRoute } from './metrics/metrics-route.ts';
import { createServerMetrics } from './metrics/metrics.ts';
import { createDpopVerifier } from './gateway/dpop/verifier.ts';
import { createStoreReplayCache } from './gateway/dpop/store-replay-cache.ts';
import { buildHandshakeChecks } from './gateway/guard/index.ts';
import { admitToken } from './gateway/guard/revocation.ts';
import { ConnectionRegistry } from './gateway/registry.ts';
import { RevocationVerdicts } from './gateway/revocation-verdicts.ts';
import { RevocationService } from './gateway/revocations.ts';
import { buildTokenTrust } from './gateway/token-trust.ts';
import { rejectUpgrade } from './gateway/reject.ts';
import { closeForShutdown } from './gateway/shutdown.ts';
import { createUpgradeHandler } from './gateway/upgrade.ts';
import { pathWithoutQuery } from './log/logger.ts';
import { pruneBrowserSessions } from './store/browser-sessions.ts';
import { epochSeconds, openStore, type Store } from './store/database.ts';
import { pruneExpiredPayloads } from './store/oidc-adapter.ts';
import { pruneRevokedGrants } from './store/revocations.ts';
import { pruneRevocationEvents } from './store/revocation-events.ts';
import { loadOrCreateSecret } from './store/secrets.ts';
import { loadTlsMaterial } from './tls/dev-ca.ts';
import { clientCertificateRequest } from './tls/client-ca.ts';
import fs from 'node:fs';
import { createBffClient } from './web/bff-client.ts';
import { createClientErrorHandler } from './web/client-errors.ts';
import { capHeaderLines, hasTooManyHeaderLines, sendTooManyHeaderLines } from './web/header-lines.ts';
import { hostCheckOptions, rejectInvalidHost, routeNodeDefaults } from './web/node-defaults.ts';
import type { WebContext } from './web/context.ts';
import { configureRoutes } from './web/configure-routes.ts';
import type { VerifiedToken } from './gateway/token-verifier.ts';
import { createLocalFetch } from './web/local-fetch.ts';
import { createPlainListener } from './web/plain-listener.ts';
import { applySecurityHeaders } from './web/security-headers.ts';

/** A started Portcullis server. */
export interface RunningServer {
  /** Origin the server actually listens on, e.g. `https://127.0.0.1:8443`. */
  listenUrl: string;
  port: number;
  /** Origin of the plain-HTTP listener for a TLS-terminating proxy, e.g. `http://10.0.0.5:8080`, or null without `plainPort`. */
  plainListenUrl: string | null;
  /** Port of the plain-HTTP listener, or null without `plainPort`. */
  plainPort: number | null;
  /** Origin of the token-free metrics listener, e.g. `http://127.0.0.1:9464`, or null without `metricsListen`. */
  metricsListenUrl: string | null;
  /** Path of the generated development CA certificate; null with operator-supplied TLS files. */
  caFile: string | null;
  /** One line per insecure development default in force. */
  warnings: string[];
  store: Store;
  /**
   * Publishes `data` on `channel` as the operator (no permission check) to every subscriber on this
   * node, and through Redis to the other nodes when it is configured. Returns how many subscribers
   * on this node received it; throws `invalid_channel` for a bad name.
   */
  publish(channel: string, data: unknown): number;
  /** Stops accepting on both listeners, closes live sockets with 1001 and releases the database. */
  close(): Promise<void>;
}

const pruneIntervalMs = 10 * 60_000;
// How long after expiry a session cookie may still be used for logout and refresh.
const sessionGraceSeconds = 300;
// `portcullis keys rotate` also notifies a running server at once through the admin socket.
const keyPollIntervalMs = 5_000;
// Events are read within a second; a day covers any server that was briefly stopped.
const revocationEventRetentionSeconds = 86_400;
// Every revocation empties the verdict cache at once. The age bound limits how long one entry can
// outlive a change that no revocation event announces.
const verdictMaxAgeMs = 60_000;
// When no successful poll of the revocation events began in the last 2 s (four poll intervals),
// handshakes read the database again.
const verdictMaxFeedSilenceMs = 2_000;

/**
 * Starts the HTTPS server that is both the auth server and the WebSocket gateway, and with
 * `plainPort` a plain-HTTP listener with the same routes for a TLS-terminating proxy.
 */
export async function startServer(options: Readonly<Options>, logger: Logger): Promise<RunningServer> {
  const store = await openStore(options, logger);
  // Started first, so that every security event of this process reaches the audit trail.
  const auditWriter = new AuditWriter({ store, logger });
  const stopAuditPruning = startAuditPruning({ store, logger, retentionDays: options.auditRetentionDays });
  const tls = await loadTlsMaterial({ dataDir: options.dataDir, certFile: options.tlsCertFile, keyFile: options.tlsKeyFile });
  // Created early so that an unreadable webhook secret stops the start before anything listens.
  const webhook = createWebhookDispatcher(options, logger);

  const [cookieKey, csrfKey, stateKey, gatewayClientSecret] = await Promise.all([
    loadOrCreateSecret(store, 'cookie_key'),
    loadOrCreateSecret(store, 'csrf_key'),
    loadOrCreateSecret(store, 'state_key'),
    loadOrCreateSecret(store, 'gateway_client_secret'),
  ]);
  const servesAuth = options.role !== 'gateway';
  const servesGateway = options.role !== 'auth';
  const keyRing = new SigningKeyRing(store, options.accessTokenTtlSeconds + options.clockLeewaySeconds, logger);
  // A gateway that trusts an external issuer has no use for the built-in keys.
  const usesLocalKeys = options.issuer === null;
  if (usesLocalKeys) {
    await keyRing.reload();
  }

  const registry = new ConnectionRegistry({ logger, expiryWarningSeconds: options.expiryWarningSeconds });
  const broker = new ChannelBroker();
  // Used DPoP proofs, in the database: the replay cache without Redis, and during a Redis outage.
  const storedProofs = createStoreReplayCache(store, logger);
  const cluster = options.redisUrl
    ? await startCluster({ redisUrl: options.redisUrl, keyPrefix: options.redisKeyPrefix, maxPayloadBytes: options.maxPayloadBytes, logger, broker, registry, proofReplayFallback: storedProofs })
    : null;
  const verdicts = new RevocationVerdicts({ maxAgeMs: verdictMaxAgeMs, maxFeedSilenceMs: verdictMaxFeedSilenceMs });
  const revocations = new RevocationService({ store, registry, logger, announce: cluster?.announceRevocation, verdicts });
  cluster?.listenForRevocations((revocation) => revocations.applyAnnounced(revocation));
  await revocations.start();
  registry.start();

  // oidc-provider fixes its keys at construction, so a key rotation builds a new instance.
  const buildAuthServer = () => createAuthServer({
    options,
    store,
    logger,
    signingKeys: keyRing.current(),
    cookieKeys: [cookieKey],
    gatewayClientSecret,
    onGrantRevoked: (grantId) => revocations.revokeGrant(grantId, 'auth_server', options.accessTokenTtlSeconds + options.clockLeewaySeconds),
  });
  const auth = servesAuth ? { provider: buildAuthServer() } : null;
  let providerCallback = auth?.provider.callback() ?? null;
  keyRing.onChange(() => {
    if (auth) {
      auth.provider = buildAuthServer();
      providerCallback = auth.provider.callback();
    }
  });

  const metrics = createServerMetrics({
    logger,
    countConnections: () => registry.countByKind(),
    databaseBackend: options.databaseUrl ? 'postgresql' : 'sqlite',
    databaseReachable: () => storeReachable(store),
    redisAvailable: cluster ? () => cluster.status().redis === 'available' : null,
  });
  const trust = buildTokenTrust(options, () => keyRing.current(), logger);
  const verifyToken = metrics.timeTokenVerification(trust.verifyToken);
  // The browser drops the cookie at expiry anyway, so a short grace covers clock skew and slow requests.
  const verifyExpiredSessionToken = trust.verifyWithGrace(sessionGraceSeconds);
  const revocationScope = { deviceRegistry: trust.builtInIssuer };
  const admitTokenOf = (kind: 'browser' | 'device', token: VerifiedToken) => admitToken(store, kind, token, revocationScope);
  // The `https://` form of the WebSocket URL is also the built-in issuer's audience.
  const dpop = createDpopVerifier({ htu: gatewayAudience(options), algorithms: dpopAlgorithms, clockLeewaySeconds: options.clockLeewaySeconds, replayCache: cluster?.proofReplayCache ?? storedProofs });

  const publicHost = new URL(options.publicUrl).host;
  const trackProviderRequest = createRequestContextTracker();
  const clientErrorHandler = createClientErrorHandler(logger);
  let server!: https.Server;
  let routeRequest!: (request: IncomingMessage, response: ServerResponse) => void;
  const serveRequest = (request: IncomingMessage, response: ServerResponse) => handleRequest(request, response, () => routeRequest(request, response));
  const app = Fastify({
    bodyLimit: 64 * 1024,
    trustProxy: options.trustedProxies.length > 0 ? [...options.trustedProxies] : false,
    // Passed to Fastify rather than added with server.on, because Fastify's default handler would respond first.
    clientErrorHandler,
    serverFactory: (fastifyHandler) => {
      routeRequest = (request, response) => {
        const path = pathWithoutQuery(request.url);
        if (providerCallback && (path.startsWith('/oauth/') || path.startsWith('/.well-known/'))) {
          // oidc-provider builds its URLs from the request's host and scheme, and marks its cookies
          // Secure for https. With a trusted proxy, Koa believes forwarded headers from any peer. Both
          // listeners route only requests that arrived over TLS or from a vouching proxy, so the public
          // host and https are set here, and a forged Host cannot reach discovery.
          request.headers.host = publicHost;
          delete request.headers['x-forwarded-host'];
          request.headers['x-forwarded-proto'] = 'https';
          trackProviderRequest(response);
          providerCallback(request, response);
          return;
        }
        fastifyHandler(request, response);
      };
      server = https.createServer({
        cert: tls.cert,
        key: tls.key,
        minVersion: 'TLSv1.2',
        maxHeaderSize: options.maxHeaderBytes,
        requestTimeout: options.handshakeTimeoutMs,
        headersTimeout: options.handshakeTimeoutMs,
        handshakeTimeout: options.handshakeTimeoutMs,
        // Node checks requestTimeout and headersTimeout only at this interval (default 30 s in Node 20).
        connectionsCheckingInterval: Math.min(options.handshakeTimeoutMs, 1000),
        ...clientCertificateRequest(options.tlsClientCaFile),
        ...hostCheckOptions,
      }, serveRequest);
      capHeaderLines(server);
      return server;
    },
  });

  function handleRequest(request: IncomingMessage, response: ServerResponse, route: () => void): void {
    const requestId = crypto.randomUUID();
    const started = process.hrtime.bigint();
    response.setHeader('X-Request-Id', requestId);
    applySecurityHeaders(response, options.publicUrl);
    response.on('finish', () => {
      logger.info({
        event: 'http.request',
        request_id: requestId,
        method: request.method,
        path: pathWithoutQuery(request.url),
        status: response.statusCode,
        duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
        ip: request.socket.remoteAddress,
      }, 'request completed');
    });
    if (hasTooManyHeaderLines(request)) {
      sendTooManyHeaderLines(response);
      return;
    }
    if (rejectInvalidHost(request, response)) {
      return;
    }
    route();
  }

  const context: WebContext = {
    options,
    store,
    logger,
    auth,
    revocationScope,
    verifyToken,
    dpop,
    verifyExpiredSessionToken,
    bffClient: createBffClient({
      issuer: options.publicUrl,
      clientId: gatewayClientId,
      clientSecret: gatewayClientSecret,
      fetch: createLocalFetch({ host: options.host, port: () => (server.address() as AddressInfo).port, ca: tls.caFile ? fs.readFileSync(tls.caFile, 'utf8') : null, servername: tls.caFile ? 'localhost' : undefined }),
    }),
    throttle: new LoginThrottle(),
    csrfKey,
    stateKey,
    gatewayAudience: gatewayAudience(options),
    registry,
    revocations,
    broker,
    clusterStatus: cluster ? () => cluster.status() : null,
    readinessProbes: trust.builtInIssuer
      ? { store: () => storeReachable(store) }
      : { store: () => storeReachable(store), jwks: () => trust.issuerKeys.probe() },
  };
  await configureRoutes(app, context, { servesAuth, servesGateway });
  registerMetricsRoute(app, { ...context, registry: metrics.registry });

  const upgrade = createUpgradeHandler({
    checks: buildHandshakeChecks({ store, verifyToken, builtInIssuer: trust.builtInIssuer, gatewayClientId, csrfKey, allowedOrigins: options.allowedOrigins, trustedProxies: options.trustedProxies, clientCertificateHeader: options.tlsClientCertHeader, verdicts, dpop }),
    logger,
    maxPayloadBytes: options.maxPayloadBytes,
    limits: options,
    createRateLimiter: cluster?.createRateLimiter,
    reserveSlot: cluster?.reserveSlot,
    deviceLimitKey: trust.builtInIssuer ? undefined : (token) => `${token.clientId} ${token.sub}`,
    services: {
      logger,
      maxBufferedBytes: options.maxBufferedBytes,
      maxSubscriptions: options.maxSubscriptions,
      messageRatePerSecond: options.messageRatePerSecond,
      broker,
      registry,
      verifyToken,
      admitToken: admitTokenOf,
      dpop,
      onClientPublish: webhook?.enqueue,
      traffic: metrics.traffic,
    },
  });
  await app.ready();
  // An auth-only process rejects every upgrade with 404, like any other unknown resource.
  const upgradeListener = servesGateway ? upgrade.listener : (_request: IncomingMessage, socket: Duplex) => rejectUpgrade(socket, 'not_found');
  attachServerListeners(server, upgradeListener, logger);
  routeNodeDefaults(server, { request: serveRequest, upgrade: upgradeListener });
  const plainServer = options.plainPort === null
    ? null
    : createPlainListener({ options, logger, handleRequest, route: routeRequest, upgradeListener, clientErrorHandler });

  const port = await listen(server, options.port, options.host);
  const plainPort = plainServer ? await listen(plainServer, options.plainPort!, options.host) : null;
  const metricsListener = options.metricsListen === null ? null : await startMetricsListener(parseMetricsListen(options.metricsListen), metrics.registry, logger);
  const adminSocket = await startAdminSocket(options.dataDir, {
    registry,
    keyRing,
    broker,
    maxPayloadBytes: options.maxPayloadBytes,
    announceRevocation: (revocation) => revocations.applyRecorded(revocation),
  }, logger);

  const pruneTimer = setInterval(() => {
    Promise.all([pruneExpiredPayloads(store), pruneRevokedGrants(store), pruneBrowserSessions(store), pruneRevocationEvents(store, revocationEventRetentionSeconds)])
      .catch((error) => logger.error({ event: 'store.prune_failed', err: error }, 'pruning expired rows failed'));
  }, pruneIntervalMs);
  pruneTimer.unref();
  // During a database outage every poll fails, so its warning is logged once a minute.
  const keyReloadWarning = new ThrottledWarning(logger);
  const keyPollTimer = setInterval(() => {
    if (usesLocalKeys) {
      keyRing.reload().catch((error) => keyReloadWarning.warn({ event: 'key.reload_failed', err: error }, 'reloading signing keys failed'));
    }
  }, keyPollIntervalMs);
  keyPollTimer.unref();

  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  const plainListenUrl = plainPort === null ? null : `http://${host}:${plainPort}`;
  logger.info({ event: 'server.started', role: options.role, listen: `https://${host}:${port}`, listen_plain: plainListenUrl ?? undefined, public_url: options.publicUrl, issuer: options.issuer ?? options.publicUrl }, 'server started');

  return {
    listenUrl: `https://${host}:${port}`,
    port,
    plainListenUrl,
    plainPort,
    metricsListenUrl: metricsListener?.url ?? null,
    caFile: tls.caFile,
    warnings: developmentWarnings(options, tls.caFile),
    store,
    publish: (channel, data) => publishAsOperator(broker, channel, data),
    async close() {
      clearInterval(pruneTimer);
      clearInterval(keyPollTimer);
      registry.stop();
      upgrade.stop();
      revocations.stop();
      await webhook?.stop();
      metrics.stop();
      await metricsListener?.close();
      if (adminSocket) {
        const adminClosed = new Promise<void>((resolve) => adminSocket.close(() => resolve()));
        adminSocket.closeAllConnections();
        await adminClosed;
      }
      // Stop accepting first, so no client reconnects to this node while its connections are closed.
      const listeners = plainServer ? [server, plainServer] : [server];
      const closed = Promise.all(listeners.map((listener) => new Promise<void>((resolve) => listener.close(() => resolve()))));
      const goodbyes = closeForShutdown(upgrade.websocketServer.clients, options.drainWindowMs);
      logger.info({ event: 'server.draining', connections: goodbyes, drain_window_ms: options.drainWindowMs }, 'closing connections with spread reconnect hints');
      listeners.forEach((listener) => listener.closeAllConnections());
      await app.close();
      await closed;
      await stopAuditPruning();
      await auditWriter.stop();
      // Last, so that the connection slots of the sockets closed above leave Redis before the link closes.
      await cluster?.close();
      await store.destroy();
      logger.info({ event: 'server.stopped' }, 'server stopped');
    },
  };
}

async function listen(server: http.Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

function attachServerListeners(server: https.Server, upgradeListener: (request: IncomingMessage, socket: import('node:stream').Duplex, head: Buffer) => void, logger: Logger): void {
  server.on('upgrade', upgradeListener);

  server.on('tlsClientError', (error: NodeJS.ErrnoException) => {
    logger.debug({ event: 'tls.client_error', code: error.code }, 'TLS handshake failed');
  });
}

// A readiness check runs every few seconds, so a database that hangs must not hang it.
async function storeReachable(store: Store): Promise<boolean> {
  const probe = sql`select 1`.execute(store).then(() => true, () => false);
  const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2000).unref());
  return Promise.race([probe, timeout]);
}

function developmentWarnings(options: Readonly<Options>, caFile: string | null): string[] {
  const warnings: string[] = [];
  if (caFile) {
    warnings.push(`Using a generated development CA (${caFile}); pass --tls-cert and --tls-key in production.`);
  }
  if (new URL(options.publicUrl).hostname === 'localhost') {
    warnings.push(`The public URL's host is localhost (${options.publicUrl}), which only this machine reaches; set --public-url to the address clients use in production.`);
  }
  return warnings;
}
