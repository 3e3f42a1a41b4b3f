import type { IncomingMessage } from 'node:http';

import WebSocket from 'ws';

import type { DeviceClientOptions } from './device-options.ts';
import { parseRetryAfter, type Rejection, type Welcome } from './policy.ts';
import { certificateOf } from './token-source.ts';
import { trustContext } from './trust.ts';

/** The subprotocol the device offers. */
export const applicationProtocol = 'portcullis.v1';

/** The socket of one connection attempt and what is known about it. */
export interface Attempt {
  socket: WebSocket;
  tokenWasFresh: boolean;
  rejection: Rejection | null;
  welcome: Welcome | null;
  openedAtMs: number | null;
  /** Resolvers of `refresh` calls waiting for `auth_ok`. */
  authWaiters: Array<() => void>;
  /** Clamped `after_ms` of the latest `reconnect` frame on this connection, in milliseconds. */
  reconnectAfterMs: number | null;
}

/** Opens the socket of a new attempt with the handshake `headers`. */
export function startAttempt(options: DeviceClientOptions, headers: Record<string, string>, tokenWasFresh: boolean): Attempt {
  const socket = new WebSocket(options.url, [applicationProtocol], {
    headers,
    // Passed on to tls.connect; `ws` does not list it in its option types.
    ...{ secureContext: trustContext(options.ca, certificateOf(options.credentials)) },
    handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
    maxPayload: options.maxPayloadBytes ?? 1024 * 1024,
    perMessageDeflate: false,
    followRedirects: false,
  });
  return { socket, tokenWasFresh, rejection: null, welcome: null, openedAtMs: null, authWaiters: [], reconnectAfterMs: null };
}

/** Reads a refused handshake: its status, the `X-Portcullis-Error` code and `Retry-After`. */
export function rejectionOf(response: IncomingMessage): Rejection {
  const header = response.headers['x-portcullis-error'];
  return {
    status: response.statusCode ?? 0,
    code: typeof header === 'string' ? header : null,
    retryAfterMs: parseRetryAfter(response.headers['retry-after'], Date.now()),
  };
}
