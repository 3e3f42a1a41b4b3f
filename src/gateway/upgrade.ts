import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';

import { closeCodes, type ErrorCode } from '../errors.ts';
import { pathWithoutQuery } from '../log/logger.ts';
import { serveConnection, type Connection, type ConnectionServices } from './connection.ts';
import { runHandshakeChecks } from './guard/index.ts';
import { rejectUpgrade } from './reject.ts';
import { applicationProtocol, headerValues, parseOfferedProtocols, type HandshakeCheck, type HandshakeState } from './handshake.ts';

/** Path of the WebSocket endpoint. */
export const websocketPath = '/ws';

/** Inputs of the upgrade handler. */
export interface UpgradeHandlerInit {
  checks: HandshakeCheck[];
  logger: Logger;
  maxPayloadBytes: number;
  /** Services accepted connections use: registry, token verification and revocation lookups. */
  services: ConnectionServices;
}

/**
 * Creates the `upgrade` listener of the HTTPS server. Every check runs before `handleUpgrade`, so a
 * rejected client never gets a WebSocket; it gets an HTTP status and a JSON error instead.
 */
export function createUpgradeHandler(init: UpgradeHandlerInit) {
  const websocketServer = new WebSocketServer({
    noServer: true,
    maxPayload: init.maxPayloadBytes,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(applicationProtocol) ? applicationProtocol : false),
  });

  async function handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', (error) => init.logger.debug({ event: 'handshake.socket_error', err: error }, 'socket error during handshake'));

    const state = createState(request);
    if (!state) {
      reject(request, socket, 'bad_handshake');
      return;
    }
    if (state.url.pathname !== websocketPath) {
      reject(request, socket, 'not_found');
      return;
    }

    const rejection = await runHandshakeChecks(init.checks, state);
    if (rejection) {
      reject(request, socket, rejection);
      return;
    }
    if (socket.destroyed) {
      return;
    }

    websocketServer.handleUpgrade(request, socket, head, (websocket) => {
      const connection: Connection = {
        id: crypto.randomUUID(),
        kind: state.kind ?? 'device',
        socket: websocket,
        token: state.verified!,
        origin: state.kind === 'browser' ? headerValues(request, 'origin')[0] ?? null : state.verified!.clientId,
        peerAddress: state.peerAddress,
        connectedAt: Date.now(),
      };
      init.logger.info({
        event: 'handshake.accepted',
        connection_id: connection.id,
        kind: connection.kind,
        sub: connection.token.sub,
        client_id: connection.token.clientId,
        ip: connection.peerAddress,
      }, 'handshake accepted');
      try {
        serveConnection(connection, init.services);
      } catch (error) {
        // The socket is a WebSocket now, so an HTTP error response would corrupt its framing.
        init.logger.error({ event: 'connection.setup_failed', connection_id: connection.id, err: error }, 'serving an accepted connection failed');
        websocket.close(closeCodes.internalError, 'server_error');
      }
    });
  }

  function reject(request: IncomingMessage, socket: Duplex, code: ErrorCode): void {
    init.logger.info({
      event: 'handshake.rejected',
      code,
      path: pathWithoutQuery(request.url),
      origin: truncate(headerValues(request, 'origin')[0]),
      client_id: truncate(headerValues(request, 'x-client-id')[0]),
      ip: request.socket.remoteAddress,
    }, 'handshake rejected');
    rejectUpgrade(socket, code);
  }

  return {
    websocketServer,
    listener(request: IncomingMessage, socket: Duplex, head: Buffer): void {
      handleUpgrade(request, socket, head).catch((error: unknown) => {
        init.logger.error({ event: 'handshake.failed', err: error }, 'handshake failed with an internal error');
        rejectUpgrade(socket, 'server_error');
      });
    },
  };
}

function createState(request: IncomingMessage): HandshakeState | null {
  let url: URL;
  try {
    url = new URL(request.url ?? '', 'https://gateway.invalid');
  } catch {
    return null;
  }

  return {
    request,
    url,
    peerAddress: request.socket.remoteAddress ?? '',
    kind: null,
    token: null,
    offeredProtocols: parseOfferedProtocols(request),
    verified: null,
  };
}

// Header values are attacker-controlled; only a bounded prefix reaches the log.
function truncate(value: string | undefined): string | undefined {
  return value === undefined ? undefined : value.slice(0, 200);
}
