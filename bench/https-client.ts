// A small HTTPS client for loopback servers that present the benchmark certificate.
import https from 'node:https';

/** Port and trusted CA of a loopback server, with an optional agent for kept-alive connections. */
export interface HttpsTarget {
  port: number;
  caPem: string;
  /** Without an agent, every request opens a new TLS connection. */
  agent?: https.Agent;
}

/** Status, headers and body of one response. */
export interface HttpsResponse {
  status: number;
  /** Response headers, with lower-case names as Node's `http` parses them. */
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * Sends one request to `127.0.0.1:<port>` with TLS server name and `Host` header `localhost`, the
 * host of the public URL, so that no name lookup decides between 127.0.0.1 and ::1.
 */
export function httpsRequest(target: HttpsTarget, method: string, path: string, headers: Record<string, string> = {}, body = ''): Promise<HttpsResponse> {
  return new Promise((resolve, reject) => {
    const request = https.request({
      host: '127.0.0.1',
      port: target.port,
      servername: 'localhost',
      ca: target.caPem,
      agent: target.agent,
      method,
      path,
      headers: { host: `localhost:${target.port}`, 'content-length': String(Buffer.byteLength(body)), ...headers },
    }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(body);
  });
}

/** Returns the `Authorization` header value of HTTP Basic authentication with a client id and secret (RFC 6749 section 2.3.1). */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`;
}

/** Sends a form-encoded POST and returns the parsed JSON body. Throws on a non-2xx status. */
export async function postForm(target: HttpsTarget, path: string, form: Record<string, string>, authorization: string): Promise<Record<string, unknown>> {
  const response = await httpsRequest(target, 'POST', path, {
    authorization,
    'content-type': 'application/x-www-form-urlencoded',
  }, new URLSearchParams(form).toString());
  if (response.status < 200 || response.status > 299) {
    throw new Error(`POST ${path} failed with status ${response.status}: ${response.body.slice(0, 300)}`);
  }
  return JSON.parse(response.body) as Record<string, unknown>;
}
