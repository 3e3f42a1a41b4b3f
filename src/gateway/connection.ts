import type { Logger } from 'pino';
import type { WebSocket } from 'ws';

import { closeCodes } from '../errors.ts';
import type { VerifiedToken } from './token-verifier.ts';

/** One accepted WebSocket connection and who holds it. */
export interface Connection {
  id: string;
  kind: 'browser' | 'device';
  socket: WebSocket;
  token: VerifiedToken;
  /** The browser's Origin or the device's client id. */
  origin: string | null;
  peerAddress: string;
  connectedAt: number;
}

/**
 * Sends the welcome frame and echoes text frames back. The channel protocol will replace the echo.
 */
export function serveConnection(connection: Connection, logger: Logger): void {
  const { socket, token } = connection;

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
    socket.send(data, { binary: false });
  });

  socket.on('error', (error) => {
    logger.debug({ event: 'connection.error', connection_id: connection.id, err: error }, 'connection error');
  });

  socket.on('close', (code) => {
    logger.info({ event: 'connection.closed', connection_id: connection.id, close_code: code }, 'connection closed');
  });
}
