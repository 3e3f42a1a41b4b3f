import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

/** The parsed response to a hand-written HTTP request. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The body parsed as JSON, or null. */
  json: { error?: string; error_description?: string } | null;
}

/** Options of one hand-written handshake. */
export interface RawHandshakeOptions {
  port: number;
  /** CA PEM for TLS; omit `ca` and set `plain` for a cleartext request. */
  ca?: string;
  plain?: boolean;
  path?: string;
  method?: string;
  /** Extra header lines, in order; a value of null drops a default header. */
  headers?: Record<string, string | string[] | null>;
}

/** Builds the default headers of a valid WebSocket upgrade for `localhost:<port>`. */
export function upgradeHeaders(port: number): Record<string, string> {
  return {
    Host: `localhost:${port}`,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
  };
}

/**
 * Sends one request over a fresh TLS (or plain) socket and reads the response until the server closes
 * the socket or a 101 arrives. Status 101 means the upgrade was accepted.
 */
export function rawHandshake(options: RawHandshakeOptions): Promise<RawResponse> {
  const headers: Record<string, string | string[] | null> = { ...upgradeHeaders(options.port), ...options.headers };
  const lines = [`${options.method ?? 'GET'} ${options.path ?? '/ws'} HTTP/1.1`];
  for (const [name, value] of Object.entries(headers)) {
    if (value === null) {
      continue;
    }
    for (const item of Array.isArray(value) ? value : [value]) {
      lines.push(`${name}: ${item}`);
    }
  }
  const request = `${lines.join('\r\n')}\r\n\r\n`;

  return new Promise((resolve, reject) => {
    const socket = options.plain
      ? net.connect({ host: '127.0.0.1', port: options.port })
      : tls.connect({ host: '127.0.0.1', port: options.port, servername: 'localhost', ca: options.ca });
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(new Error('no answer within 10 s')), 10_000);

    socket.once(options.plain ? 'connect' : 'secureConnect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.toString('latin1').startsWith('HTTP/1.1 101')) {
        socket.destroy();
      }
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      if (received.length > 0) {
        resolve(parseResponse(received));
        return;
      }
      reject(error);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(parseResponse(received));
    });
  });
}

function parseResponse(raw: Buffer): RawResponse {
  const text = raw.toString('utf8');
  const headerEnd = text.indexOf('\r\n\r\n');
  const head = headerEnd === -1 ? text : text.slice(0, headerEnd);
  const body = headerEnd === -1 ? '' : text.slice(headerEnd + 4);
  const [statusLine, ...headerLines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const separator = line.indexOf(':');
    headers[line.slice(0, separator).trim().toLowerCase()] = line.slice(separator + 1).trim();
  }

  let json: RawResponse['json'] = null;
  try {
    json = JSON.parse(body);
  } catch {
    json = null;
  }
  return { status: Number(statusLine.split(' ')[1] ?? 0), headers, body, json };
}
