import type { Logger } from 'pino';

/** One log call that carried an `event` name, as metrics and the audit trail receive it. */
export interface TappedEvent {
  /** The stable event name, such as `handshake.rejected`. */
  event: string;
  /** The pino level number: 30 info, 40 warn, 50 error. */
  level: number;
  /** The fields of the log call after secret redaction; `event` included. */
  fields: Readonly<Record<string, unknown>>;
  /** Epoch milliseconds of the call. */
  time: number;
}

export type TappedEventListener = (event: TappedEvent) => void;

/**
 * Hands every log call that names an `event` to its listeners, before the line is written. Metrics
 * and the audit trail subscribe here, so each event is named once, at its log call, and a new
 * listener needs no change where events happen.
 */
export class EventTap {
  readonly #listeners = new Set<TappedEventListener>();

  /** Adds `listener` and returns the function that removes it. */
  subscribe(listener: TappedEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  dispatch(event: TappedEvent): void {
    for (const listener of this.#listeners) {
      // A failing listener must neither lose the log line nor stop the others.
      try {
        listener(event);
      } catch {
        // NOTE: listeners report their own failures; there is no logger here to report to.
      }
    }
  }
}

const taps = new WeakMap<Logger, EventTap>();

/** Links `tap` to `logger`, for `eventTapOf`. */
export function attachEventTap(logger: Logger, tap: EventTap): void {
  taps.set(logger, tap);
}

/** Returns the tap of a logger made by `createLogger`, or a tap that no call reaches for any other logger. */
export function eventTapOf(logger: Logger): EventTap {
  return taps.get(logger) ?? new EventTap();
}
