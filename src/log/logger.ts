import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Paths pino blanks out wherever they appear. Loggers here pass allow-listed fields only, so this is
 * a backstop for a mistake, not the main defence.
 */
const redactedPaths = [
  'password', '*.password',
  'token', '*.token',
  'access_token', '*.access_token',
  'refresh_token', '*.refresh_token',
  'id_token', '*.id_token',
  'client_secret', '*.client_secret',
  'authorization', '*.authorization',
  'cookie', '*.cookie',
  'headers', '*.headers',
  'req.headers', 'res.headers',
  'secret', '*.secret',
  'privateKey', '*.privateKey',
];

/** Creates the process logger: JSON lines on stdout (or `destination`), with secret paths redacted. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'portcullis' },
      redact: { paths: redactedPaths, censor: '[redacted]' },
      serializers: { err: serializeError },
    },
    destination,
  );
}

/** Serialises an error with its name, code and stack, but never request or response objects. */
export function serializeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) {
    return { message: String(error) };
  }
  const { code } = error as Error & { code?: unknown };
  return { type: error.name, message: error.message, code, stack: error.stack };
}

// Three base64url segments, the first starting like a JSON object header ("eyJ").
const jwtLikePattern = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;

/**
 * Strips the query string from a URL path and blanks JWT-like parts of the path, because both may
 * carry credentials. A token pasted into the path, e.g. `/ws/<jwt>`, would otherwise reach the logs.
 */
export function pathWithoutQuery(url: string | undefined): string {
  if (!url) {
    return '';
  }
  const index = url.indexOf('?');
  const path = index === -1 ? url : url.slice(0, index);
  // A percent-encoded token must not slip past the pattern, so the decoded form is what gets logged.
  return safeDecode(safeDecode(path)).replace(jwtLikePattern, '[redacted]');
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
