import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

import type { Logger } from 'pino';

import type { Options } from '../config/options.ts';
import { errorBody } from '../errors.ts';
import { createTlsTest } from '../gateway/guard/transport.ts';
import { rejectUpgrade } from '../gateway/reject.ts';
import { pathWithoutQuery } from '../log/logger.ts';
import { capHeaderLines } from './header-lines.ts';
import { hostCheckOptions, routeNodeDefaults } from './node-defaults.ts';

/** Inputs of {@link createPlainListener}. Every handler is the one the HTTPS listener uses. */
export interface PlainListenerInit {
  options: Pick<Options, 'trustedProxies' | 'maxHeaderBytes' | 'handshakeTimeoutMs'>;
  logger: Logger;
  /** Sets the request id and security headers, logs the request when it finishes, and calls `route`. */
  handleRequest: (request: IncomingMessage, response: ServerResponse, route: () => void) => void;
  /** Sends the request to oidc-provider or to Fastify. */
  route: (request: IncomingMessage, response: ServerResponse) => void;
  upgradeListener: (request: IncomingMessage, socket: Duplex, head: Buffer) => void;
  clientErrorHandler: (error: NodeJS.ErrnoException, socket: Duplex) => void;
}

/**
 * Creates, without listening, the plain-HTTP server for a TLS-terminating proxy. A request or upgrade
 * is routed only when it comes from an address in `trustedProxies` with exactly one
 * `X-Forwarded-Proto: https`. Anything else gets 426 `tls_required`.
 */
export function createPlainListener(init: PlainListenerInit): http.Server {
  const { options, logger } = init;
  const arrivedOverTls = createTlsTest(options.trustedProxies);
  const forwardedOverTls = (request: IncomingMessage) => arrivedOverTls(request, request.socket.remoteAddress ?? '');

  const serveRequest = (request: IncomingMessage, response: ServerResponse) => {
    init.handleRequest(request, response, () => {
      if (!forwardedOverTls(request)) {
        sendTlsRequired(response);
        return;
      }
      init.route(request, response);
    });
  };
  const server = http.createServer({
    maxHeaderSize: options.maxHeaderBytes,
    requestTimeout: options.handshakeTimeoutMs,
    headersTimeout: options.handshakeTimeoutMs,
    // Node checks requestTimeout and headersTimeout only at this interval (default 30 s in Node 20).
    connectionsCheckingInterval: Math.min(options.handshakeTimeoutMs, 1000),
    ...hostCheckOptions,
  }, serveRequest);

  const upgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // The handshake guard runs the same test, but after the rate limits and the path check. Here a
    // request that fails it gets 426 on any path and counts against no rate limit.
    if (!forwardedOverTls(request)) {
      logger.info({ event: 'handshake.rejected', code: 'tls_required', path: pathWithoutQuery(request.url), ip: request.socket.remoteAddress }, 'handshake rejected');
      rejectUpgrade(socket, 'tls_required');
      return;
    }
    init.upgradeListener(request, socket, head);
  };
  server.on('upgrade', upgrade);
  routeNodeDefaults(server, { request: serveRequest, upgrade });
  server.on('clientError', init.clientErrorHandler);
  capHeaderLines(server);
  return server;
}

// RFC 9110 section 7.8: a 426 response names the protocol to switch to in Upgrade, with the
// `upgrade` connection option. The connection is closed, as after a rejected handshake.
function sendTlsRequired(response: ServerResponse): void {
  const body = JSON.stringify(errorBody('tls_required'));
  response.writeHead(426, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    Upgrade: 'TLS/1.2, HTTP/1.1',
    Connection: 'Upgrade, close',
  });
  response.end(body);
}
