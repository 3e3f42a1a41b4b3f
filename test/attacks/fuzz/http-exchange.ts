import tls from 'node:tls';

/** How one hand-written request ended. */
export interface ExchangeResult {
  /**
   * `response` when a complete final response arrived, `closed` when the server closed the socket
   * before that, `timeout` when neither happened within the wait.
   */
  ending: 'response' | 'closed' | 'timeout';
  /** Status of the final response, 0 without one. */
  status: number;
  /** Interim 1xx statuses before the final response, such as 100 Continue. */
  interimStatuses: number[];
  /** Response headers by lower-case name; repeated lines are joined with `, `. */
  headers: Record<string, string>;
  body: string;
}

/** Options of {@link exchange}. */
export interface ExchangeOptions {
  port: number;
  ca: string;
  request: Buffer;
  /**
   * A response to HEAD from the HTTP router, which carries `X-Request-Id`, ends after its header
   * section (RFC 9110 section 9.3.2). Responses written straight to the socket, such as a rejected
   * upgrade, carry their body even then.
   */
  isHeadRequest: boolean;
  /** Maximum wait for the response, in milliseconds; a fuzz input that reaches it has hung the server. */
  waitMs: number;
}

interface ParsedHead {
  status: number;
  headers: Record<string, string>;
  bodyStart: number;
}

/**
 * Sends `request` over a fresh TLS connection to 127.0.0.1 and reads one response. The socket is
 * destroyed as soon as the response is complete, so a keep-alive response ends the exchange too.
 * After a 101 nothing more is read.
 */
export function exchange(options: ExchangeOptions): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: options.port, servername: 'localhost', ca: options.ca });
    const interimStatuses: number[] = [];
    let received = Buffer.alloc(0);
    let settled = false;

    const finish = (result: Omit<ExchangeResult, 'interimStatuses'>) => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...result, interimStatuses });
    };
    const timer = setTimeout(() => finish({ ending: 'timeout', status: 0, headers: {}, body: received.toString('latin1') }), options.waitMs);

    const readResponse = (closed: boolean) => {
      for (;;) {
        const head = parseHead(received);
        if (!head) {
          break;
        }
        // RFC 9110 section 15.2: interim responses precede the final one, and 101 ends HTTP.
        if (head.status >= 100 && head.status < 200 && head.status !== 101) {
          interimStatuses.push(head.status);
          received = received.subarray(head.bodyStart);
          continue;
        }
        const bodiless = head.status === 101 || (options.isHeadRequest && head.headers['x-request-id'] !== undefined);
        const body = bodiless ? Buffer.alloc(0) : completeBody(head, received.subarray(head.bodyStart), closed);
        if (body) {
          finish({ ending: 'response', status: head.status, headers: head.headers, body: body.toString('utf8') });
        }
        break;
      }
      if (closed) {
        finish({ ending: 'closed', status: 0, headers: {}, body: received.toString('latin1') });
      }
    };

    socket.once('secureConnect', () => socket.write(options.request));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      readResponse(false);
    });
    // A reset after the response is normal for a rejected handshake; what arrived before it counts.
    socket.on('error', () => {});
    socket.once('close', () => readResponse(true));
  });
}

function parseHead(buffer: Buffer): ParsedHead | null {
  const end = buffer.indexOf('\r\n\r\n');
  if (end === -1) {
    return null;
  }

  const [statusLine, ...lines] = buffer.subarray(0, end).toString('latin1').split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
  if (!match) {
    return null;
  }
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const separator = line.indexOf(':');
    const name = line.slice(0, separator).trim().toLowerCase();
    const value = line.slice(separator + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { status: Number(match[1]), headers, bodyStart: end + 4 };
}

/** Returns the body once all of it arrived, else null. Without a length it lasts until the close. */
function completeBody(head: ParsedHead, rest: Buffer, closed: boolean): Buffer | null {
  const length = head.headers['content-length'];
  if (length !== undefined) {
    return rest.length >= Number(length) ? rest.subarray(0, Number(length)) : null;
  }
  if (/chunked/i.test(head.headers['transfer-encoding'] ?? '')) {
    return decodeChunked(rest);
  }
  return closed ? rest : null;
}

function decodeChunked(rest: Buffer): Buffer | null {
  const chunks: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = rest.indexOf('\r\n', offset);
    if (lineEnd === -1) {
      return null;
    }
    const size = parseInt(rest.subarray(offset, lineEnd).toString('latin1'), 16);
    if (Number.isNaN(size)) {
      return Buffer.concat(chunks);
    }
    if (size === 0) {
      return Buffer.concat(chunks);
    }
    if (rest.length < lineEnd + 2 + size + 2) {
      return null;
    }
    chunks.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
}
