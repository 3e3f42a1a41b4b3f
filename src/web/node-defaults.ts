import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

import { errorBody } from '../errors.ts';

/**
 * Server option for both listeners. Node would respond to an HTTP/1.1 request without `Host`
 * itself, with a bare 400 and no body, so `rejectInvalidHost` takes over that check.
 */
export const hostCheckOptions = { requireHostHeader: false } as const;

/** The listeners of one server to which `routeNodeDefaults` hands Node's own cases. */
export interface ServerListeners {
  request: (request: IncomingMessage, response: ServerResponse) => void;
  upgrade: (request: IncomingMessage, socket: Duplex, head: Buffer) => void;
}

/**
 * Hands the requests to which Node responds on its own by default to the server's listeners, so
 * every error response comes from the error catalogue.
 */
export function routeNodeDefaults(server: Pick<Server, 'on'>, listeners: ServerListeners): void {
  // Node responds to an `Expect` other than 100-continue with a bare 417. RFC 9110 section 10.1.1
  // lets a server ignore it instead, so the request is served as if it had no `Expect`.
  server.on('checkExpectation', listeners.request);
  // Without a listener Node destroys the socket of a CONNECT request without a response. The
  // upgrade listener rejects it like any other upgrade that is not a GET: `upgrade_required` on
  // `/ws`, `not_found` elsewhere.
  server.on('connect', listeners.upgrade);
}

/**
 * Rejects a request with 400 `invalid_request` and closes the connection when it is HTTP/1.1 without
 * a `Host` line, has more than one, or names a version other than 1.0 and 1.1. RFC 9112 section 3.2
 * requires the `Host` rule. Node would keep the first of several `Host` lines, while a proxy in front
 * may have read another. Returns true when it rejected the request.
 */
export function rejectInvalidHost(request: IncomingMessage, response: ServerResponse): boolean {
  // Node's parser also takes `HTTP/0.9` and `HTTP/2.0` request lines, which would skip the rule.
  const hostLines = countHostLines(request);
  const validHost = request.httpVersion === '1.1' ? hostLines === 1 : request.httpVersion === '1.0' && hostLines <= 1;
  if (validHost) {
    return false;
  }

  const body = JSON.stringify(errorBody('invalid_request'));
  response.writeHead(400, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Portcullis-Error': 'invalid_request',
    Connection: 'close',
  });
  response.end(body);
  return true;
}

function countHostLines(request: IncomingMessage): number {
  let count = 0;
  for (let index = 0; index < request.rawHeaders.length; index += 2) {
    if (request.rawHeaders[index].toLowerCase() === 'host') {
      count += 1;
    }
  }
  return count;
}
