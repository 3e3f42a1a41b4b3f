import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

import { errorBody, type ErrorCode } from '../errors.ts';
import { pathWithoutQuery } from '../log/logger.ts';
import type { ListenAddress } from './listen-address.ts';
import { metricsPath, scrape } from './metrics-route.ts';

// A scraper sends a small GET and reads a few hundred lines, so anything slower is stuck.
const requestTimeoutMs = 10_000;

/** A started metrics listener. */
export interface MetricsListener {
  /** Origin it listens on, such as `http://127.0.0.1:9464`. */
  url: string;
  close(): Promise<void>;
}

function sendError(response: ServerResponse, code: ErrorCode, status: number): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  response.end(JSON.stringify(errorBody(code)));
}

async function serveScrape(registry: Registry, allowedHosts: ReadonlySet<string>, request: IncomingMessage, response: ServerResponse, logger: Logger): Promise<void> {
  // A page in a browser on this host could otherwise read the metrics through DNS rebinding.
  if (!allowedHosts.has((request.headers.host ?? '').toLowerCase())) {
    sendError(response, 'invalid_request', 400);
    return;
  }
  if (pathWithoutQuery(request.url) !== metricsPath) {
    sendError(response, 'not_found', 404);
    return;
  }
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.setHeader('allow', 'GET, HEAD');
    sendError(response, 'method_not_allowed', 405);
    return;
  }

  try {
    const { contentType, body } = await scrape(registry);
    response.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
    response.end(request.method === 'HEAD' ? undefined : body);
  } catch (error) {
    logger.error({ event: 'metrics.scrape_failed', err: error }, 'collecting metrics failed');
    sendError(response, 'server_error', 500);
  }
}

/**
 * Starts the plain-HTTP listener of `--metrics-listen`, which serves only `GET /metrics` and requires
 * no token. `address` must be a loopback address, which `parseMetricsListen` checks.
 */
export async function startMetricsListener(address: ListenAddress, registry: Registry, logger: Logger): Promise<MetricsListener> {
  // `Host` values that name this listener, filled in once the port is known.
  const allowedHosts = new Set<string>();
  const server = http.createServer({ requestTimeout: requestTimeoutMs, headersTimeout: requestTimeoutMs }, (request, response) => {
    serveScrape(registry, allowedHosts, request, response, logger).catch((error: unknown) => {
      logger.error({ event: 'metrics.scrape_failed', err: error }, 'serving a metrics request failed');
      response.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const { port } = server.address() as AddressInfo;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  for (const name of [host, 'localhost']) {
    allowedHosts.add(`${name}:${port}`.toLowerCase());
  }
  logger.info({ event: 'metrics.listening', listen: `http://${host}:${port}` }, 'metrics listener started');
  return {
    url: `http://${host}:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
