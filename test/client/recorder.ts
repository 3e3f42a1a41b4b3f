// Helpers of the device SDK tests: a recorder of what a client reports, and server log queries.
import type { ChannelMessage, DeviceClientOptions, StateChange, SubscribedEvent, SubscriptionEndedEvent } from '../../src/client/device.ts';
import type { TestServer } from '../support/server.ts';

// Safety stop for each wait below; no assertion depends on how long anything took.
export const waitLimitMs = 30_000;

/** Records what one client reports and lets a test wait for a condition on it. */
export class Recorder {
  readonly changes: StateChange[] = [];
  readonly messages: ChannelMessage[] = [];
  readonly subscribed: SubscribedEvent[] = [];
  readonly ended: SubscriptionEndedEvent[] = [];
  readonly refreshedAt: number[] = [];
  readonly logLines: string[] = [];
  private readonly waiters = new Set<() => void>();

  hooks(): Pick<DeviceClientOptions, 'onStateChange' | 'onMessage' | 'onSubscribed' | 'onSubscriptionEnded' | 'onTokenRefreshed' | 'logger'> {
    const log = (fields: Record<string, unknown>, message: string) => {
      this.logLines.push(JSON.stringify({ ...fields, message }));
    };
    return {
      onStateChange: (change) => this.record(() => this.changes.push(change)),
      onMessage: (message) => this.record(() => this.messages.push(message)),
      onSubscribed: (event) => this.record(() => this.subscribed.push(event)),
      onSubscriptionEnded: (event) => this.record(() => this.ended.push(event)),
      onTokenRefreshed: (expiresAt) => this.record(() => this.refreshedAt.push(expiresAt)),
      logger: { debug: log, info: log, warn: log },
    };
  }

  get states(): string[] {
    return this.changes.map((change) => change.state);
  }

  get last(): StateChange | undefined {
    return this.changes.at(-1);
  }

  /** Resolves once `predicate` holds; rejects after `limitMs` naming `what`. */
  until(predicate: () => boolean, what: string, limitMs = waitLimitMs): Promise<void> {
    if (predicate()) {
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate()) {
          clearTimeout(timer);
          this.waiters.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no ${what} within ${limitMs} ms; states so far: ${JSON.stringify(this.changes)}`));
      }, limitMs);
      this.waiters.add(check);
    });
  }

  /** Calls `change` and then wakes the waits of `until`, for callbacks that a test passes to the client itself. */
  record(change: () => void): void {
    change();
    this.waiters.forEach((check) => check());
  }
}

/** One parsed JSON line of a test server's log. */
export type LogLine = Record<string, unknown>;

/** Returns the server's log lines from index `from` on, parsed. */
export function logLines(server: TestServer, from = 0): LogLine[] {
  return server.logs.slice(from).map((line) => JSON.parse(line) as LogLine);
}

/** Polls the server log until a line matches; bounded by `waitLimitMs`. */
export async function waitForLog(server: TestServer, predicate: (line: LogLine) => boolean, what: string): Promise<LogLine> {
  for (let waited = 0; waited < waitLimitMs; waited += 50) {
    const line = logLines(server).find(predicate);
    if (line) {
      return line;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the server logged no ${what} within ${waitLimitMs} ms`);
}

/** Counts the tokens the server issued to `clientId` with `grantType`. */
export function tokensIssued(server: TestServer, clientId: string, grantType: string): number {
  return logLines(server).filter((line) => line.event === 'token.issued' && line.client_id === clientId && line.grant_type === grantType).length;
}

/** Builds the options of a client of `server` that reports to `recorder`; `extra` overrides any of them. */
export function clientOptions(server: TestServer, clientId: string, recorder: Recorder, extra: Partial<DeviceClientOptions> = {}): DeviceClientOptions {
  return {
    url: `wss://localhost:${server.port}/ws`,
    issuer: server.url,
    clientId,
    credentials: { none: true },
    ca: server.caPem,
    ...recorder.hooks(),
    ...extra,
  };
}

/** Resolves when the client's latest state is `open`. */
export function opened(recorder: Recorder): Promise<void> {
  return recorder.until(() => recorder.last?.state === 'open', 'open state');
}

/** Resolves when the client's latest state is `stopped`. */
export function stopped(recorder: Recorder): Promise<void> {
  return recorder.until(() => recorder.last?.state === 'stopped', 'stopped state');
}
