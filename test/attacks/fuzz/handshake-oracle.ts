// Decides whether the response to a fuzzed handshake is one the docs allow. The rules do not repeat
// the guard's logic. A 101 needs the genuine credential set on the wire, and every other response
// must be a documented error.
import crypto from 'node:crypto';

import { documentedErrorStatuses, errorBodyProblem } from './documented-outcomes.ts';
import type { HandshakeCredentials } from './handshake-arbitraries.ts';
import type { ExchangeResult } from './http-exchange.ts';

/** The request as Node's parser would split it, from the encoded bytes. */
interface WireRequest {
  method: string;
  target: string;
  /** Header lines with lower-case names and values trimmed of any whitespace. */
  headers: Array<[string, string]>;
}

function readWire(bytes: Buffer): WireRequest {
  const text = bytes.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const [requestLine, ...lines] = text.slice(0, end === -1 ? text.length : end).split('\r\n');
  const [method = '', target = ''] = requestLine.split(' ');
  const headers = lines.map((line): [string, string] => {
    const separator = line.indexOf(':');
    return [line.slice(0, separator).toLowerCase(), line.slice(separator + 1).trim()];
  });
  return { method, target, headers };
}

function valuesOf(request: WireRequest, name: string): string[] {
  return request.headers.filter(([header]) => header === name).map(([, value]) => value);
}

/**
 * Tells which genuine credential set the request carries, if any: a registered device's token with
 * its client id, or the browser session with its CSRF token and origin. Whitespace around a value
 * does not change a credential, so it is ignored here. Any other change does.
 */
function genuineCredentialSet(request: WireRequest, credentials: HandshakeCredentials): 'device' | 'browser' | null {
  const bearers = valuesOf(request, 'authorization').map((value) => /^bearer\s+(\S+)\s*$/i.exec(value)?.[1]);
  const clientIds = valuesOf(request, 'x-client-id');
  if (credentials.validDevices.some((device) => bearers.includes(device.accessToken) && clientIds.includes(device.clientId))) {
    return 'device';
  }

  const sessionPair = `__Host-portcullis-session=${credentials.sessionTokens.genuine}`;
  const cookie = valuesOf(request, 'cookie').some((value) => value.split(';').some((pair) => pair.trim() === sessionPair));
  const csrfOffer = `portcullis.csrf.${credentials.csrfToken}`;
  const csrf = valuesOf(request, 'sec-websocket-protocol').some((value) => value.split(',').some((offer) => offer.trim() === csrfOffer));
  const origin = valuesOf(request, 'origin').some((value) => value.toLowerCase() === credentials.origin.toLowerCase());
  return cookie && csrf && origin ? 'browser' : null;
}

/** Computes the `Sec-WebSocket-Accept` value for a key (RFC 6455 section 4.2.2). */
export function acceptValue(key: string): string {
  return crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

function secretsIn(text: string, credentials: HandshakeCredentials): string[] {
  const secrets = [credentials.deviceTokens.genuine, ...credentials.deviceTokens.foreign, credentials.sessionTokens.genuine, credentials.csrfToken];
  return secrets.filter((secret) => text.includes(secret)).map((secret) => `${secret.slice(0, 8)}...`);
}

function acceptProblem(request: WireRequest, result: ExchangeResult, credentials: HandshakeCredentials): string | null {
  if (genuineCredentialSet(request, credentials) === null) {
    return 'the handshake was accepted without the genuine credential set';
  }
  if (request.method !== 'GET') {
    return `the handshake was accepted with method ${JSON.stringify(request.method)}`;
  }
  if (new URL(request.target, 'https://gateway.invalid').pathname !== '/ws') {
    return `the handshake was accepted on target ${JSON.stringify(request.target)}`;
  }
  const selected = result.headers['sec-websocket-protocol'];
  if (selected !== undefined && selected !== 'portcullis.v1') {
    return `the server selected the subprotocol ${JSON.stringify(selected)}`;
  }
  return null;
}

/**
 * Checks one response: a 101 only for the genuine credential set, with `portcullis.v1` as the only
 * subprotocol the server may select; anything else an error documented in docs/errors.md with its
 * status and fixed text. The server must respond within the wait and must not echo a secret.
 * Returns what is wrong, or null.
 */
export function handshakeResponseProblem(bytes: Buffer, result: ExchangeResult, credentials: HandshakeCredentials): string | null {
  const request = readWire(bytes);
  if (result.ending === 'timeout') {
    return 'the server did not respond within the wait';
  }
  if (result.ending === 'closed') {
    return `the server closed the connection without a complete response (received ${JSON.stringify(result.body.slice(0, 80))})`;
  }

  const echoed = secretsIn(JSON.stringify(result.headers) + result.body, credentials);
  if (echoed.length > 0) {
    return `the response contains the secrets ${echoed.join(', ')}`;
  }
  if (result.status === 101) {
    return acceptProblem(request, result, credentials);
  }

  const marker = result.headers['x-portcullis-error'];
  if (request.method === 'HEAD' && result.headers['x-request-id'] !== undefined) {
    return headResponseProblem(result);
  }

  let json: unknown = null;
  try {
    json = JSON.parse(result.body);
  } catch {
    return `status ${result.status} with a body that is not JSON: ${JSON.stringify(result.body.slice(0, 80))}`;
  }
  const problem = errorBodyProblem(result.status, json);
  if (problem) {
    return problem;
  }
  if (marker !== undefined && marker !== (json as { error: string }).error) {
    return `X-Portcullis-Error ${marker} differs from the body's error`;
  }
  return null;
}

// The HTTP router responds to HEAD without a body (RFC 9110 section 9.3.2), so only the content type
// and the code in X-Portcullis-Error, where the route sets one, remain to check.
function headResponseProblem(result: ExchangeResult): string | null {
  if (!/^application\/json/.test(result.headers['content-type'] ?? '')) {
    return `HEAD got ${result.status} without a JSON content type`;
  }
  const marker = result.headers['x-portcullis-error'];
  if (marker !== undefined && documentedErrorStatuses.get(marker) !== result.status) {
    return `HEAD got ${result.status} with X-Portcullis-Error ${marker}, which docs/errors.md does not give that status`;
  }
  return null;
}

/** Returns a short label of a response for the outcome tally, such as `101` or `403 origin_not_allowed`. */
export function responseLabel(result: ExchangeResult): string {
  if (result.ending !== 'response') {
    return result.ending;
  }
  if (result.status === 101) {
    return '101';
  }
  try {
    return `${result.status} ${(JSON.parse(result.body) as { error?: string }).error ?? ''}`.trim();
  } catch {
    const marker = result.headers['x-portcullis-error'];
    return marker === undefined ? `${result.status} (no JSON)` : `${result.status} ${marker} (no body)`;
  }
}
