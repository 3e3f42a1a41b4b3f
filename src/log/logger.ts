import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Field names blanked out at the top level of a log line and one level below it. Loggers here pass
 * allow-listed fields only, so this is a backstop for a mistake, not the main defence.
 */
export const redactedFields: ReadonlySet<string> = new Set([
  'password', 'token', 'access_token', 'refresh_token', 'id_token', 'client_secret',
  'authorization', 'cookie', 'headers', 'secret', 'privateKey',
]);

const censor = '[redacted]';

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

function redactLevel(object: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | null = null;
  for (const key of Object.keys(object)) {
    if (redactedFields.has(key)) {
      copy ??= { ...object };
      copy[key] = censor;
    }
  }
  return copy ?? object;
}

/**
 * Blanks the redacted fields of a log line and of the plain objects in it. It does what pino's
 * `redact` option does with a `*.name` path for each field, at a tenth of the cost: those
 * wildcard paths took about 10 µs per line, more than the rest of a handshake's logging.
 */
export function redactSecrets(object: Record<string, unknown>): Record<string, unknown> {
  let result = redactLevel(object);
  for (const [key, value] of Object.entries(result)) {
    if (isPlainObject(value)) {
      const nested = redactLevel(value);
      if (nested !== value) {
        result = result === object ? { ...object } : result;
        result[key] = nested;
      }
    }
  }
  return result;
}

// Lines wait in memory for at most this long, or until 4 KiB have gathered.
const flushIntervalMs = 1000;

/**
 * Creates the process logger: JSON lines on stdout (or `destination`), with secret paths redacted.
 * Stdout is written in batches, because one write per line costs a system call for every
 * handshake; pino writes out what is left when the process exits.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  let target = destination;
  if (!target) {
    const stdout = pino.destination({ dest: 1, sync: false, minLength: 4096 });
    setInterval(() => {
      if (!(stdout as unknown as { destroyed: boolean }).destroyed) {
        stdout.flush();
      }
    }, flushIntervalMs).unref();
    target = stdout;
  }

  return pino(
    {
      level,
      base: { service: 'portcullis' },
      formatters: { log: redactSecrets },
      serializers: { err: serializeError },
    },
    target,
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
