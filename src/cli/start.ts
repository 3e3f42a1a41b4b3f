import { parseOptionArgs, resolveOptions } from '../config/load.ts';
import { createLogger, flushLogs } from '../log/logger.ts';
import { startServer } from '../server.ts';

/** Usage of `portcullis start`. */
export const startUsage = `portcullis start [--role all|auth|gateway] [--host ADDRESS] [--port PORT] [--public-url URL] [--data-dir DIR]
                 [--tls-cert FILE --tls-key FILE] [--allowed-origin ORIGIN]... [--trusted-proxy ADDRESS]... [--plain-port PORT]
                 [--database-url postgres://...] [--redis-url redis://...] [--webhook-url URL] [--metrics-listen 127.0.0.1:PORT]
                 [--issuer URL --audience AUDIENCE [--jwks-url URL] [--token-algorithm ALG]...]
                 [--log-level LEVEL] [--config FILE]
                 (every option in docs/configuration.md has a flag, such as --message-rate or --max-payload)`;

/** Runs `portcullis start`: serves until SIGINT or SIGTERM, then shuts down cleanly. */
export async function runStart(argv: string[]): Promise<void> {
  const { values } = parseOptionArgs(argv);
  const options = resolveOptions(values, process.env);
  const logger = createLogger(options.logLevel);

  const server = await startServer(options, logger);

  const banner = [
    `Portcullis is running (role ${options.role}).`,
    `  Public URL:   ${options.publicUrl}/`,
  ];
  if (options.role !== 'auth') {
    banner.push(`  WebSocket:    ${options.publicUrl.replace(/^https:/, 'wss:')}/ws`);
  }
  if (options.role !== 'gateway') {
    banner.push(`  Discovery:    ${options.publicUrl}/.well-known/oauth-authorization-server`);
  }
  if (options.issuer) {
    banner.push(`  Issuer:       ${options.issuer} (audience ${options.audience})`);
  }
  banner.push(`  Listening on: ${server.listenUrl}`);
  if (server.plainListenUrl) {
    banner.push(`  Plain HTTP:   ${server.plainListenUrl} (only for requests that a --trusted-proxy forwards with X-Forwarded-Proto: https)`);
  }
  if (server.metricsListenUrl) {
    banner.push(`  Metrics:      ${server.metricsListenUrl}/metrics (no token; loopback only)`);
  }
  banner.push(`  Data dir:     ${options.dataDir}`);
  if (server.caFile) {
    banner.push(`  CA cert:      ${server.caFile} (trust it in clients, e.g. NODE_EXTRA_CA_CERTS or ssl_context.load_verify_locations)`);
  }
  for (const warning of server.warnings) {
    banner.push(`WARNING: ${warning}`);
  }
  process.stderr.write(`${banner.join('\n')}\n`);

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ event: 'server.stopping', signal }, 'shutting down');
      server.close().catch((error) => {
        logger.error({ event: 'server.stop_failed', err: error }, 'shutdown failed');
      }).then(() => flushLogs(logger)).then(resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
