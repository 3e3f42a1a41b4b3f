import type { Logger } from 'pino';

/** Interval between two lines of one repeated warning, in milliseconds. */
const defaultIntervalMs = 60_000;

/**
 * Logs a warning that other nodes or clients can repeat at will: the first occurrence at once, then
 * at most one line per interval, which counts the occurrences left out since the previous line in
 * `suppressed`.
 */
export class ThrottledWarning {
  private lastLoggedMs = Number.NEGATIVE_INFINITY;
  private suppressed = 0;

  constructor(private readonly logger: Logger, private readonly intervalMs: number = defaultIntervalMs) {}

  /** Logs `fields` and `message` at warn level unless a line was logged within the interval. */
  warn(fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    if (now - this.lastLoggedMs < this.intervalMs) {
      this.suppressed += 1;
      return;
    }

    this.logger.warn({ ...fields, suppressed: this.suppressed }, message);
    this.lastLoggedMs = now;
    this.suppressed = 0;
  }
}
