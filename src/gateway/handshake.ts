import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

import type { ErrorCode } from '../errors.ts';
import type { VerifiedToken } from './token-verifier.ts';

/** Name of the browser session cookie; the `__Host-` prefix pins it to this host, `Secure` and `Path=/`. */
export const sessionCookieName = '__Host-portcullis-session';

/** The application subprotocol; the only one the server ever selects. */
export const applicationProtocol = 'portcullis.v1';

/** Prefix of the subprotocol offer that carries a browser's CSRF token. */
export const csrfProtocolPrefix = 'portcullis.csrf.';

/** State the guard collects about one upgrade request as its checks run. */
export interface HandshakeState {
  request: IncomingMessage;
  url: URL;
  /** Address of the TCP peer. */
  peerAddress: string;
  /** Browser when the session cookie is present, device otherwise; set by the credentials check. */
  kind: 'browser' | 'device' | null;
  /** The presented access token, from the cookie or the `Authorization` header. */
  token: string | null;
  /** Scheme of the `Authorization` header: `Bearer`, or `DPoP` for a proof-of-possession token (RFC 9449). */
  scheme: 'bearer' | 'dpop' | null;
  /** Subprotocols offered in `Sec-WebSocket-Protocol`, in order. */
  offeredProtocols: string[];
  verified: VerifiedToken | null;
  /** The failed part of a check, from a fixed set, for the log line, such as `htu` for a DPoP proof. */
  detail?: string;
  /** Revocation epoch read before the revocation check looked the token up, when verdicts are cached. */
  revocationEpoch?: number;
}

/** The outcome of one check: nothing when it passes, or the rejection. */
export type CheckResult = ErrorCode | undefined;

/** One handshake check: a name for logs and the order test, and the check itself. */
export interface HandshakeCheck {
  name: string;
  run(state: HandshakeState): CheckResult | Promise<CheckResult>;
  /**
   * Runs once more right before the upgrade, after the rate limits and the connection cap, for a
   * result that may have changed while they were awaited.
   */
  confirm?(state: HandshakeState): CheckResult | Promise<CheckResult>;
}

/** Tells whether the request arrived over TLS on this socket. */
export function isTlsSocket(request: IncomingMessage): boolean {
  return (request.socket as TLSSocket).encrypted === true;
}

// The checks of one handshake look up about ten headers, so each request's raw header lines are
// indexed by lower-case name once rather than scanned for every lookup.
const headerIndexes = new WeakMap<IncomingMessage, Map<string, readonly string[]>>();
const noValues: readonly string[] = Object.freeze([]);

/**
 * Returns the values of one request header as a list, one entry per header line (Node joins most
 * repeated headers with commas in `headers`). `name` is lower case.
 */
export function headerValues(request: IncomingMessage, name: string): readonly string[] {
  let index = headerIndexes.get(request);
  if (!index) {
    index = indexHeaders(request.rawHeaders);
    headerIndexes.set(request, index);
  }
  return index.get(name) ?? noValues;
}

function indexHeaders(raw: readonly string[]): Map<string, readonly string[]> {
  const index = new Map<string, string[]>();
  for (let position = 0; position < raw.length; position += 2) {
    const name = raw[position].toLowerCase();
    const values = index.get(name);
    if (values) {
      values.push(raw[position + 1]);
    } else {
      index.set(name, [raw[position + 1]]);
    }
  }
  // Every check of the handshake shares these lists.
  index.forEach((values) => Object.freeze(values));
  return index;
}

/** Splits `Sec-WebSocket-Protocol` offers into trimmed tokens. */
export function parseOfferedProtocols(request: IncomingMessage): string[] {
  const offered: string[] = [];
  for (const value of headerValues(request, 'sec-websocket-protocol')) {
    for (const item of value.split(',')) {
      const protocol = item.trim();
      if (protocol !== '') {
        offered.push(protocol);
      }
    }
  }
  return offered;
}
