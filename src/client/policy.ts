// Browser-safe: no Node imports. The rules both SDKs share: what a close code or a rejected handshake
// means for the client, when to refresh a token, and how to read the server's control frames.

/** State of a client: trying to open, open, waiting to retry, or stopped for good. */
export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'stopped';

/**
 * Reason codes the SDKs report themselves. Server codes (`token_expired`, `token_revoked`, ...) and
 * OAuth token endpoint codes (`invalid_grant`, `invalid_client`, ...) are reported unchanged.
 */
export type ClientReasonCode =
  | 'started'
  | 'welcome'
  | 'closed'
  | 'connection_lost'
  | 'going_away'
  | 'connection_closed'
  | 'handshake_rejected'
  | 'token_request_failed'
  | 'refresh_token_missing'
  | 'refresh_token_store_failed'
  | 'invalid_dpop_key'
  | 'unexpected_token_type'
  | 'aborted'
  | 'login_required'
  | 'session_unavailable'
  | 'client_error';

/** The server's welcome frame, the first frame of every connection. */
export interface Welcome {
  connectionId: string;
  sub: string;
  clientId: string;
  /** Token expiry in epoch seconds: the token's `exp` claim. */
  expiresAt: number;
  /**
   * The token's space-separated `scope` claim, such as `subscribe:users/{sub}/#`. Placeholders stay
   * as written, because the server replaces `{sub}` and `{client_id}` only when it checks a request.
   */
  scope: string;
}

/** One state transition reported to `onStateChange`. */
export interface StateChange<State extends string = ClientState> {
  state: State;
  /** A `ClientReasonCode`, or a server or OAuth error code. */
  reason: ClientReasonCode | (string & {});
  /** Close code of the socket that ended, when a close caused the change. */
  closeCode?: number;
  /** HTTP status of a rejected handshake or token request, when one caused the change. */
  status?: number;
  /** Delay before the next attempt, in milliseconds; set with `reconnecting`. */
  retryInMs?: number;
  /** True when `retryInMs` is the `after_ms` of the server's `reconnect` frame, not a backoff delay. */
  retryHinted?: boolean;
  /** The welcome frame; set with `open`. */
  welcome?: Welcome;
}

/** An SDK failure with a stable snake_case code. The message never contains a token or secret. */
export class PortcullisClientError extends Error {
  readonly code: string;
  /** True when trying again later may succeed (network, 5xx); false when only a person can fix it. */
  readonly retryable: boolean;

  constructor(code: string, message: string, retryable: boolean) {
    super(message);
    this.name = 'PortcullisClientError';
    this.code = code;
    this.retryable = retryable;
  }
}

/** Decision after a socket closed or a handshake failed. */
export type Decision =
  | { action: 'reconnect'; reason: string; notBeforeMs?: number }
  | { action: 'refresh_then_reconnect'; reason: string }
  | { action: 'stop'; reason: string };

// Close reasons are free text on the wire; only a short snake_case code is passed on as a reason.
function reasonCode(reason: string, fallback: string): string {
  return /^[a-z][a-z0-9_]{0,63}$/.test(reason) ? reason : fallback;
}

/**
 * Decides by close-code range: 4401 gets a new token and reconnects; 4500-4999 (server trouble,
 * mirroring HTTP 5xx) reconnects; every other 4000-4999 code (mirroring HTTP 4xx, such as 4403
 * `token_revoked`) stops; codes below 4000 (1001 going away, 1006 lost, 1011, ...) reconnect.
 * A close reason is passed on only when it is a snake_case code.
 */
export function decideOnClose(code: number, reason: string): Decision {
  if (code === 4401) {
    return { action: 'refresh_then_reconnect', reason: reasonCode(reason, 'token_expired') };
  }
  if (code >= 4500 && code <= 4999) {
    return { action: 'reconnect', reason: reasonCode(reason, 'connection_closed') };
  }
  if (code >= 4000) {
    return { action: 'stop', reason: reasonCode(reason, 'connection_closed') };
  }

  let fallback: ClientReasonCode = 'connection_closed';
  if (code === 1001) {
    fallback = 'going_away';
  } else if (code === 1006) {
    fallback = 'connection_lost';
  }
  return { action: 'reconnect', reason: reasonCode(reason, fallback) };
}

/** A rejected device handshake: HTTP status, `X-Portcullis-Error` code and `Retry-After` delay. */
export interface Rejection {
  status: number;
  code: string | null;
  retryAfterMs: number | null;
}

/** Handshake codes that blame the DPoP proof rather than the token it goes with. */
export const dpopProofErrors: ReadonlySet<string> = new Set(['invalid_dpop_proof', 'use_dpop_nonce']);

/**
 * Decides after a rejected handshake. A 401 with a token that was cached gets one new token; a 401
 * with a token fetched for this very attempt stops, because a new one would fail the same way.
 * A 401 that blames the DPoP proof first reconnects once with the same token and a fresh proof,
 * unless `proofRetried` shows that this already happened. 429 and 5xx retry, no sooner than
 * `Retry-After`; every other status is a client error and stops.
 */
export function decideOnRejection(rejection: Rejection, tokenWasFresh: boolean, proofRetried = false): Decision {
  const reason = reasonCode(rejection.code ?? '', 'handshake_rejected');
  // A proof can fail for a passing reason, such as a clock step between signing and checking or a
  // new server nonce, so one new proof is tried before the token is blamed.
  if (rejection.status === 401 && dpopProofErrors.has(reason) && !proofRetried) {
    return { action: 'reconnect', reason };
  }
  if (rejection.status === 401) {
    return tokenWasFresh ? { action: 'stop', reason } : { action: 'refresh_then_reconnect', reason };
  }
  if (rejection.status === 429 || rejection.status >= 500) {
    return { action: 'reconnect', reason, notBeforeMs: rejection.retryAfterMs ?? undefined };
  }
  return { action: 'stop', reason };
}

/** Longest `Retry-After` honoured, in milliseconds; a larger value is clamped to it. */
export const maxRetryAfterMs = 10 * 60_000;

/** Parses `Retry-After` (delta seconds or an HTTP date, RFC 9110 section 10.2.3) into milliseconds from `nowMs`. */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | null {
  if (!value) {
    return null;
  }

  const trimmed = value.trim();
  const isSeconds = /^\d+$/.test(trimmed);
  // An HTTP date always ends in GMT; anything else Date.parse happens to accept is refused.
  if (!isSeconds && !/ GMT$/.test(trimmed)) {
    return null;
  }
  const milliseconds = isSeconds ? Number(trimmed) * 1000 : Date.parse(trimmed) - nowMs;
  if (!Number.isFinite(milliseconds)) {
    return null;
  }
  return Math.min(Math.max(0, milliseconds), maxRetryAfterMs);
}

/** Share of a token's lifetime that must pass before it is refreshed, whatever the margin. */
export const minimumTokenAgeShare = 0.1;

/** An access token's timing, in epoch milliseconds on the client's clock. */
export interface TokenTiming {
  receivedAtMs: number;
  expiresAtMs: number;
}

/**
 * Milliseconds from `nowMs` until a token should be refreshed: `marginSeconds` before it expires,
 * but not before a tenth of its lifetime has passed, so a margin longer than the lifetime cannot
 * turn into a loop of refreshes.
 */
export function refreshDelayMs(timing: TokenTiming, marginSeconds: number, nowMs: number): number {
  const byMargin = timing.expiresAtMs - marginSeconds * 1000;
  const earliest = timing.receivedAtMs + (timing.expiresAtMs - timing.receivedAtMs) * minimumTokenAgeShare;
  return Math.max(0, Math.max(byMargin, earliest) - nowMs);
}

/**
 * Whether an `expiring` frame should trigger a refresh now. The server sends it a fixed time before
 * expiry, which for short-lived tokens is at once; a token younger than the minimum age waits for
 * its timer instead.
 */
export function mayRefreshNow(timing: TokenTiming, nowMs: number): boolean {
  return nowMs >= timing.receivedAtMs + (timing.expiresAtMs - timing.receivedAtMs) * minimumTokenAgeShare;
}

/**
 * Maximum wait taken from a `reconnect` frame, in milliseconds. A larger `after_ms` is clamped to it.
 * It equals the largest `--drain-window` the server accepts, so no hint of a correct server is cut.
 */
export const maxReconnectAfterMs = 10 * 60_000;

/** A frame the server sends to manage the connection, as opposed to application data. */
export type ControlFrame =
  | { type: 'welcome'; welcome: Welcome }
  | { type: 'expiring'; expiresAt: number }
  | { type: 'auth_ok'; expiresAt: number }
  | { type: 'reconnect'; afterMs: number };

/** Parses a text frame as a JSON object. Returns null for any other text. */
export function parseFrameObject(text: string): Record<string, unknown> | null {
  if (!text.startsWith('{')) {
    return null;
  }

  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    return null;
  }
  return frame !== null && typeof frame === 'object' && !Array.isArray(frame) ? frame as Record<string, unknown> : null;
}

/** Reads a control frame from a parsed frame. Returns null for any other frame, such as a channel frame. */
export function readControlFrame(frame: Record<string, unknown>): ControlFrame | null {
  if (frame.type === 'reconnect') {
    return readReconnectFrame(frame);
  }
  if (typeof frame.expires_at !== 'number') {
    return null;
  }

  if (frame.type === 'welcome' && typeof frame.connection_id === 'string') {
    return {
      type: 'welcome',
      welcome: {
        connectionId: frame.connection_id,
        sub: String(frame.sub ?? ''),
        clientId: String(frame.client_id ?? ''),
        expiresAt: frame.expires_at,
        scope: typeof frame.scope === 'string' ? frame.scope : '',
      },
    };
  }
  if (frame.type === 'expiring' || frame.type === 'auth_ok') {
    return { type: frame.type, expiresAt: frame.expires_at };
  }
  return null;
}

// The clamp keeps a wrong or hostile `after_ms` from delaying the client longer than any drain window.
// A hint that is not a number is ignored, so the client falls back to its backoff.
function readReconnectFrame(frame: Record<string, unknown>): ControlFrame | null {
  if (typeof frame.after_ms !== 'number' || Number.isNaN(frame.after_ms)) {
    return null;
  }
  return { type: 'reconnect', afterMs: Math.min(Math.max(0, Math.floor(frame.after_ms)), maxReconnectAfterMs) };
}

/** Reads a control frame from text. Returns null for any other text. */
export function parseControlFrame(text: string): ControlFrame | null {
  const frame = parseFrameObject(text);
  return frame ? readControlFrame(frame) : null;
}
