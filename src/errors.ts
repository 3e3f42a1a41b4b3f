/**
 * The catalogue of every error code that leaves a Portcullis process: HTTP bodies, WebSocket close
 * reasons, SDK rejections and CLI exits. `docs/errors.md` lists the same codes, and a test keeps the
 * two in sync.
 */
export const errorCatalogue = {
  tls_required: { status: 426, description: 'The request must arrive over TLS (https:// or wss://).' },
  token_in_url: { status: 400, description: 'Credentials must not be sent in the URL; use the Authorization header or the session cookie.' },
  ambiguous_credentials: { status: 400, description: 'Send either a session cookie or an Authorization header, not both.' },
  token_missing: { status: 401, description: 'No access token was presented.' },
  token_invalid: { status: 401, description: 'The access token is malformed, has an invalid signature, or was not issued for this gateway.' },
  token_expired: { status: 401, description: 'The access token has expired.' },
  certificate_mismatch: { status: 401, description: 'The access token is bound to a client certificate that this connection did not present.' },
  invalid_dpop_proof: { status: 401, description: 'The DPoP proof is missing, malformed, not signed by the key the token is bound to, not for this request, too old, or used before.' },
  origin_not_allowed: { status: 403, description: 'The Origin of this request is not an allowed origin.' },
  csrf_invalid: { status: 403, description: 'The CSRF token is missing or not bound to this session.' },
  client_id_mismatch: { status: 403, description: 'The X-Client-Id header is missing or does not match the token.' },
  token_revoked: { status: 403, description: 'The token, its grant or its client has been revoked.' },
  upgrade_required: { status: 426, description: 'This endpoint only accepts WebSocket upgrade requests.' },
  bad_handshake: { status: 400, description: 'The WebSocket handshake request is malformed.' },
  subprotocol_required: { status: 400, description: 'The WebSocket handshake must offer the portcullis.v1 subprotocol.' },
  headers_too_large: { status: 431, description: 'The request headers are too large.' },
  request_timeout: { status: 408, description: 'The request did not arrive in full in time.' },
  not_found: { status: 404, description: 'No such resource.' },
  method_not_allowed: { status: 405, description: 'This method is not allowed on this resource.' },
  invalid_request: { status: 400, description: 'The request is malformed.' },
  login_required: { status: 401, description: 'No valid browser session; log in first.' },
  login_failed: { status: 401, description: 'Invalid username or password.' },
  login_throttled: { status: 429, description: 'Too many failed logins; try again later.' },
  login_state_invalid: { status: 400, description: 'The login flow expired or was tampered with; start again.' },
  server_error: { status: 500, description: 'An internal error occurred.' },
  too_many_connections: { status: 429, description: 'This client or user already holds the maximum number of open connections.' },
  rate_limited: { status: 429, description: 'Too many requests or messages; slow down and retry later.' },
  server_busy: { status: 503, description: 'The gateway is handling too many handshakes; retry later.' },
  temporarily_unavailable: { status: 503, description: 'A service this request depends on is unreachable; retry later.' },
  forbidden: { status: 403, description: 'The token does not grant this action on this channel.' },
  invalid_channel: { status: 400, description: 'The channel name or pattern is not valid: lower-case [a-z0-9_-] segments separated by /, at most 8 segments and 200 bytes.' },
  invalid_json: { status: 400, description: 'The frame is not valid JSON.' },
  invalid_message: { status: 400, description: 'The message lacks a field or has a field of the wrong type.' },
  invalid_id: { status: 400, description: 'The message id must be a string of 1 to 64 characters or a non-negative integer.' },
  unknown_type: { status: 400, description: 'The message type is not part of the portcullis.v1 protocol.' },
  binary_not_supported: { status: 400, description: 'Binary frames are not part of the portcullis.v1 protocol; send JSON text frames.' },
  too_many_subscriptions: { status: 400, description: 'This connection already holds the maximum number of subscriptions.' },
  data_too_deep: { status: 400, description: 'The message data nests arrays or objects deeper than 32 levels.' },
  payload_too_large: { status: 413, description: 'The request body is larger than the message limit.' },
  unsupported_media_type: { status: 415, description: 'The request body must be application/json.' },
} as const satisfies Record<string, { status: number; description: string }>;

/** A stable, snake_case error code from the catalogue. */
export type ErrorCode = keyof typeof errorCatalogue;

/**
 * Seconds a client should wait before it retries a request that failed with
 * `temporarily_unavailable`, sent as `Retry-After`.
 */
export const unavailableRetryAfterSeconds = 5;

/**
 * An error that carries a catalogue code; its message is the fixed public description. `cause` is
 * the internal error behind it, for logs only.
 */
export class PortcullisError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, options?: ErrorOptions) {
    super(errorCatalogue[code].description, options);
    this.name = 'PortcullisError';
    this.code = code;
    this.status = errorCatalogue[code].status;
  }
}

/** Builds the OAuth-shaped JSON body `{error, error_description}` for a catalogue code. */
export function errorBody(code: ErrorCode): { error: ErrorCode; error_description: string } {
  return { error: code, error_description: errorCatalogue[code].description };
}

/** WebSocket close codes that Portcullis sends, documented in `docs/errors.md`. */
export const closeCodes = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  /** Sustained abuse: the connection kept sending past its message rate (`rate_limited`). */
  policyViolation: 1008,
  /** A message was larger than `--max-payload` (after inflation when permessage-deflate is on). */
  messageTooBig: 1009,
  internalError: 1011,
  /** The peer does not read fast enough: its queued outgoing data passed `--max-buffered`. */
  tryAgainLater: 1013,
  /** Mirrors HTTP 401: the connection's token expired and was not refreshed in time (`token_expired`). */
  unauthorized: 4401,
  /** Mirrors HTTP 403: the token was revoked, or an in-band token was invalid (reason gives the code). */
  forbidden: 4403,
} as const;
