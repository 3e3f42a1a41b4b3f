import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

import type { Logger } from 'pino';

import { errorBody, errorCatalogue, type ErrorCode } from '../errors.ts';

function clientErrorCode(parserCode: string | undefined): ErrorCode {
  if (parserCode === 'HPE_HEADER_OVERFLOW') {
    return 'headers_too_large';
  }
  // Node raises this for both its headers and its request timeout, which end a request that trickles
  // in (slowloris).
  if (parserCode === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return 'request_timeout';
  }
  return 'invalid_request';
}

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
    // A response already under way on this connection would be corrupted by a second one.
    if ((socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent) {
      socket.destroy();
      return;
    }
    const code = clientErrorCode(error.code);
    const status = errorCatalogue[code].status;
    const body = JSON.stringify(errorBody(code));
    // The same headers as a rejected upgrade, because many of these requests are handshakes.
    socket.end([
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
      'Content-Type: application/json; charset=utf-8',
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Cache-Control: no-store',
      'Connection: close',
      `X-Portcullis-Error: ${code}`,
      '',
      body,
    ].join('\r\n'));
    // A client that never reads must not keep the socket open.
    setTimeout(() => socket.destroy(), 1000).unref();
  };
}
