import type { IncomingMessage, Server, ServerResponse } from 'node:http';

import { errorBody } from '../errors.ts';

/**
 * Maximum number of header lines in one request, 100 as in Apache httpd's `LimitRequestFields`
 * default. A request or upgrade with more is rejected with 431 `headers_too_large`.
 */
export const maxHeaderLines = 100;

/**
 * Sets Node's header-line cap of `server` one above `maxHeaderLines`. Past its cap Node leaves lines
 * out of `request.headers` without an error; `rawHeaders` keeps some more, which
 * `hasTooManyHeaderLines` counts.
 */
export function capHeaderLines(server: Pick<Server, 'maxHeadersCount'>): void {
  server.maxHeadersCount = maxHeaderLines + 1;
}

/**
 * Tells whether a request has more than `maxHeaderLines` header lines. Such a request may have lost
 * lines, for example an `X-Forwarded-For` or `X-Forwarded-Proto` that a proxy appended at the end,
 * so no check may trust the lines that are left.
 */
export function hasTooManyHeaderLines(request: IncomingMessage): boolean {
  return request.rawHeaders.length / 2 > maxHeaderLines;
}

/** Sends 431 `headers_too_large` in response to a request with too many header lines, and closes the connection. */
export function sendTooManyHeaderLines(response: ServerResponse): void {
  const body = JSON.stringify(errorBody('headers_too_large'));
  response.writeHead(431, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    Connection: 'close',
  });
  response.end(body);
}
