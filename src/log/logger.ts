import pino, { type DestinationStream, type LogFn, type Logger } from 'pino';

import { attachEventTap, EventTap } from './event-tap.ts';

/**
 * Field names blanked out at the top level of a log line and one level below it. Loggers here pass
 * allow-listed fields only, so this is a backstop for a mistake, not the main defence.
 */
export const redactedFields: ReadonlySet<string> = new Set([
  'password', 'token', 'access_token', 'refresh_token', 'id_token', 'client_secret',
  'authorization', 'cookie', 'headers', 'secret', 'privateKey',
]);

const censor = '[redacted]';

// Null-prototype objects count too: query-string and form parsers return them.
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
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
 * Blanks the redacted fields of a log line and of the plain objects in it. It covers what pino's
 * `redact` option covered with a `*.name` path for each field, at a tenth of the cost: those
 * wildcard paths took about 10 µs per line. Two things are left out. Fields inside class instances
 * are not looked at, and no log call passes one. Child-logger bindings never reach this hook.
 * NOTE: nothing here creates child loggers; one that binds a secret would bypass this backstop.
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
 * Creates the process logger: JSON lines on stdout (or `destination`), with secret fields redacted.
 * Stdout is written in batches, because one write per line costs a system call for every
 * handshake. Call `flushLogs` before a planned exit: at exit pino's own flush skips a write that
 * a full pipe delayed. A process that is killed loses up to the last second of lines.
 *
 * Every call that names an `event` also reaches the logger's `EventTap` (`eventTapOf`), at levels
 * from info up even when `level` writes fewer lines, because metrics and the audit trail count them.
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

  const tap = new EventTap();
  const written = levelNumber(level);
  const logger = pino(
    {
      level: written > pino.levels.values.info ? 'info' : level,
      base: { service: 'portcullis' },
      formatters: { log: redactSecrets },
      serializers: { err: serializeError },
      hooks: { logMethod: tapEvents(tap) },
    },
    written > pino.levels.values.info ? dropBelow(target, written) : target,
  );
  attachEventTap(logger, tap);
  return logger;
}

function levelNumber(level: string): number {
  return level === 'silent' ? Number.POSITIVE_INFINITY : pino.levels.values[level] ?? pino.levels.values.info;
}

// Called for every enabled log call, before pino serialises it.
function tapEvents(tap: EventTap) {
  return function logMethod(this: Logger, args: Parameters<LogFn>, method: LogFn, level: number): void {
    const fields = args[0] as unknown;
    if (typeof fields === 'object' && fields !== null && typeof (fields as { event?: unknown }).event === 'string') {
      const redacted = redactSecrets(fields as Record<string, unknown>);
      tap.dispatch({ event: redacted.event as string, level, fields: redacted, time: Date.now() });
    }
    method.apply(this, args);
  };
}

// Writes only the lines at `minimum` or above. The logger itself runs at info, so info events still reach the tap.
function dropBelow(target: DestinationStream, minimum: number): DestinationStream {
  const flushable = target as DestinationStream & { flush?: (callback: (error?: Error) => void) => void };
  return {
    write(line: string) {
      const level = Number(/^\{"level":(\d+)/.exec(line)?.[1] ?? Number.POSITIVE_INFINITY);
      if (level >= minimum) {
        target.write(line);
      }
    },
    flush(callback: (error?: Error) => void) {
      if (typeof flushable.flush === 'function') {
        flushable.flush(callback);
      } else {
        callback();
      }
    },
  } as DestinationStream;
}

/** Serialises an error with its name, code and stack, but never request or response objects. */
export function serializeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) {
    return { message: String(error) };
  }
  const { code } = error as Error & { code?: unknown };
  return { type: error.name, message: error.message, code, stack: error.stack };
}

/** Resolves once every log line written so far has left the process, or after two seconds. */
export function flushLogs(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 2000);
    timer.unref();
    try {
      // The callback gets an error on a pipe, which cannot be synced to disk; the data has left by then.
      logger.flush(() => {
        clearTimeout(timer);
        resolve();
      });
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
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
  let path = index === -1 ? url : url.slice(0, index);
  // An absolute-form request target (`http://user:secret@host/path`) may carry credentials before the path.
  const authority = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(path);
  if (authority) {
    path = path.slice(authority[0].length) || '/';
  }
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
