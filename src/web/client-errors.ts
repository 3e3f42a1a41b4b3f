import type { Duplex } from 'node:stream';

import type { Logger } from 'pino';

import { errorBody } from '../errors.ts';

/**
 * Creates the `clientError` handler of both listeners: malformed, oversized or timed-out requests get
 * a JSON error instead of Node's bare default response.
 */
export function createClientErrorHandler(logger: Logger): (error: NodeJS.ErrnoException, socket: Duplex) => void {
  return (error, socket) => {
    logger.debug({ event: 'http.client_error', code: error.code }, 'malformed request');
    // https.Server forwards TLS failures here too (e.g. ERR_TLS_HANDSHAKE_TIMEOUT). Without a TLS
    // session no HTTP response can be sent, so the socket is closed.
    if (!socket.writable || /^ERR_(TLS|SSL)_/.test(error.code ?? '')) {
      socket.destroy();
      return;
    }
    // NOTE: a request timeout gets 400 invalid_request because the catalogue has no 408 code.
    const code = error.code === 'HPE_HEADER_OVERFLOW' ? 'headers_too_large' : 'invalid_request';
    const status = code === 'headers_too_large' ? 431 : 400;
    const body = JSON.stringify(errorBody(code));
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    // A client that never reads must not keep the socket open.
    setTimeout(() => socket.destroy(), 1000).unref();
  };
}
