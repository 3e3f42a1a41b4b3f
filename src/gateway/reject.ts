import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

import { dpopAlgorithms } from '../auth/dpop.ts';
import { errorBody, errorCatalogue, type ErrorCode } from '../errors.ts';

/**
 * Rejects a failed upgrade on the raw socket with an HTTP status and a JSON error body, then closes
 * the socket without upgrading. `extraHeaders` (such as `Retry-After`) follow the fixed headers.
 * A name or value containing CR or LF throws, because it would split the response.
 */
export function rejectUpgrade(socket: Duplex, code: ErrorCode, extraHeaders: Readonly<Record<string, string>> = {}): void {
  const extraLines = Object.entries(extraHeaders).map(([name, value]) => {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) {
      throw new TypeError(`Response header ${JSON.stringify(name)} contains CR or LF`);
    }
    return `${name}: ${value}`;
  });

  if (!socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }

  const status = errorCatalogue[code].status;
  const body = JSON.stringify(errorBody(code));
  const headers = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-store',
    'Connection: close',
    // Many WebSocket clients expose the status and headers of a failed handshake but not its body.
    `X-Portcullis-Error: ${code}`,
  ];
  if (status === 401) {
    headers.push(authenticateChallenge(code));
  }
  if (status === 426) {
    headers.push(code === 'tls_required' ? 'Upgrade: TLS/1.2, HTTP/1.1' : 'Upgrade: websocket');
  }
  headers.push(...extraLines);

  socket.end(`${headers.join('\r\n')}\r\n\r\n${body}`);
  // A client that never reads must not keep the socket open.
  setTimeout(() => socket.destroy(), 1000).unref();
}

/**
 * The `WWW-Authenticate` line of a 401. RFC 6750 section 3: it names the scheme and, for a bad token,
 * the error. RFC 9449 section 7.1: a rejected proof gets a challenge under the DPoP scheme, with the proof
 * algorithms the gateway accepts.
 */
function authenticateChallenge(code: ErrorCode): string {
  if (code === 'invalid_dpop_proof') {
    return `WWW-Authenticate: DPoP error="invalid_dpop_proof", algs="${dpopAlgorithms.join(' ')}"`;
  }
  return code === 'token_missing' ? 'WWW-Authenticate: Bearer' : 'WWW-Authenticate: Bearer error="invalid_token"';
}
