import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';

import { closeCodes, PortcullisError, type ErrorCode } from '../errors.ts';
import type { ConnectionRegistry } from './registry.ts';
import type { VerifiedToken } from './token-verifier.ts';

/** One accepted WebSocket connection and the identity behind it. */
export interface Connection {
  id: string;
  kind: 'browser' | 'device';
  socket: WebSocket;
  /** The current token; an in-band refresh replaces it. */
  token: VerifiedToken;
  /** The browser's Origin or the device's client id. */
  origin: string | null;
  peerAddress: string;
  /** Epoch milliseconds. */
  connectedAt: number;
}

/** Services a connection uses besides its socket. */
export interface ConnectionServices {
  logger: Logger;
  /** Outgoing bytes a socket may have queued before it is closed with 1013. */
  maxBufferedBytes: number;
  registry: ConnectionRegistry;
  verifyToken: (token: string) => Promise<VerifiedToken>;
  findRevocation: (kind: 'browser' | 'device', token: VerifiedToken) => Promise<ErrorCode | undefined>;
}

/** Largest in-band `auth` frame accepted, in bytes; a real access token is under 1 KiB. */
const maxAuthFrameBytes = 16 * 1024;

/**
 * Registers the connection, sends the welcome frame, handles in-band `auth` frames and echoes other
 * text frames back. The channel protocol will replace the echo.
 */
export function serveConnection(connection: Connection, services: ConnectionServices): void {
  const { socket, token } = connection;
  const { logger, registry } = services;

  registry.add(connection);
  socket.send(JSON.stringify({
    type: 'welcome',
    connection_id: connection.id,
    sub: token.sub,
    client_id: token.clientId,
    expires_at: token.exp,
  }));

  socket.on('message', (data, isBinary) => {
    if (isBinary) {
      socket.close(closeCodes.unsupportedData, 'binary frames are not supported');
      return;
    }

    const authToken = readAuthFrame(data);
    if (authToken === null) {
      sendOrDrop(connection, services, data);
      return;
    }
    reauthenticate(connection, authToken, services).catch((error: unknown) => {
      logger.error({ event: 'connection.auth_failed', connection_id: connection.id, err: error }, 'in-band authentication failed with an internal error');
      socket.close(closeCodes.internalError, 'server_error');
    });
  });

  socket.on('error', (error) => {
    logger.debug({ event: 'connection.error', connection_id: connection.id, err: error }, 'connection error');
  });

  socket.on('close', (code) => {
    registry.remove(connection);
    logger.info({ event: 'connection.closed', connection_id: connection.id, close_code: code }, 'connection closed');
  });
}

/**
 * Sends a frame unless the peer has stopped reading. A client that sends but never reads would
 * otherwise make the server queue every reply in memory, so past the limit it is closed with 1013.
 */
function sendOrDrop(connection: Connection, services: ConnectionServices, data: RawData): void {
  const { socket } = connection;
  if (socket.bufferedAmount > services.maxBufferedBytes) {
    services.logger.warn({ event: 'connection.slow_consumer', connection_id: connection.id, buffered_bytes: socket.bufferedAmount }, 'closing a connection that does not read its messages');
    services.registry.remove(connection);
    socket.close(closeCodes.tryAgainLater, 'slow_consumer');
    // A peer that does not read will not complete the closing handshake either.
    setTimeout(() => socket.terminate(), 1000).unref();
    return;
  }
  socket.send(data, { binary: false });
}

/** Returns the token of a `{"type":"auth","token":…}` frame, or null for any other frame. */
function readAuthFrame(data: RawData): string | null {
  // Every text frame passes here, so a Buffer (ws's default) is read in place rather than copied.
  let buffer: Buffer;
  if (Buffer.isBuffer(data)) {
    buffer = data;
  } else if (Array.isArray(data)) {
    buffer = Buffer.concat(data);
  } else {
    buffer = Buffer.from(data);
  }
  if (buffer.length > maxAuthFrameBytes || buffer[0] !== 0x7b) {
    return null;
  }

  try {
    const frame = JSON.parse(buffer.toString('utf8')) as { type?: unknown; token?: unknown };
    return frame.type === 'auth' && typeof frame.token === 'string' ? frame.token : null;
  } catch {
    return null;
  }
}

/**
 * Verifies a fresh token sent on the open socket exactly like a handshake token. It must name the
 * same subject and client, so a socket cannot be handed over to another identity. Any failure
 * closes the connection with 4403 and the error code as reason.
 */
async function reauthenticate(connection: Connection, presented: string, services: ConnectionServices): Promise<void> {
  const outcome = await checkReplacementToken(connection, presented, services);
  if (typeof outcome === 'string') {
    services.logger.info({ event: 'connection.auth_rejected', connection_id: connection.id, code: outcome }, 'in-band token rejected');
    services.registry.remove(connection);
    connection.socket.close(closeCodes.forbidden, outcome);
    return;
  }

  services.registry.replaceToken(connection, outcome);
  services.logger.info({ event: 'connection.refreshed', connection_id: connection.id, expires_at: outcome.exp }, 'connection token refreshed in band');
  connection.socket.send(JSON.stringify({ type: 'auth_ok', expires_at: outcome.exp }));
}

async function checkReplacementToken(connection: Connection, presented: string, services: ConnectionServices): Promise<ErrorCode | VerifiedToken> {
  let verified: VerifiedToken;
  try {
    verified = await services.verifyToken(presented);
  } catch (error) {
    return error instanceof PortcullisError ? error.code : 'token_invalid';
  }

  if (verified.sub !== connection.token.sub || verified.clientId !== connection.token.clientId) {
    return 'token_invalid';
  }
  return await services.findRevocation(connection.kind, verified) ?? verified;
}
