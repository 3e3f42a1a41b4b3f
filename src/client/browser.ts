// The browser SDK (`portcullis/client`): no Node imports, so esbuild can bundle it as one ES module.
// The session cookie is HttpOnly, so this code never reads a token, only the CSRF token from /session.

import { Backoff, nextRetry, type BackoffOptions } from './backoff.ts';
import { ChannelRequests, type ChannelMessage, type ChannelOptions, type ChannelRequestCode, type Publisher, type SubscribedEvent, type SubscriptionEndedEvent } from './channels.ts';
import {
  decideOnClose,
  mayRefreshNow,
  parseFrameObject,
  readControlFrame,
  refreshDelayMs,
  type ClientState,
  type StateChange,
  type TokenTiming,
  type Welcome,
} from './policy.ts';

export { PortcullisClientError } from './policy.ts';
export type { BackoffOptions, StateChange, Welcome };
export type { ChannelMessage, ChannelOptions, ChannelRequestCode, Publisher, SubscribedEvent, SubscriptionEndedEvent };

/** States of the browser client; `unauthenticated` means the user must log in again. */
export type BrowserClientState = ClientState | 'unauthenticated';

/** Options of `createBrowserClient`. The channel callbacks and limits come from `ChannelOptions`. */
export interface BrowserClientOptions extends ChannelOptions {
  /** Gateway endpoint. Default: `wss://` and the page's host, path `/ws`. */
  url?: string;
  onStateChange?: (change: StateChange<BrowserClientState>) => void;
  /** Called when the server confirms a session refresh on the socket, with the expiry in epoch seconds. */
  onTokenRefreshed?: (expiresAt: number) => void;
  /** Seconds before the session token expires at which `/session/refresh` is called. Default 60. */
  refreshMarginSeconds?: number;
  /** Reconnect delays. Default: base 500 ms, cap 30 s. */
  backoff?: BackoffOptions;
  /** An open connection that lasted this long resets the backoff, in milliseconds. Default 10000. */
  stableOpenMs?: number;
}

/** A browser connection to the gateway, authenticated by the session cookie. */
export interface BrowserClient {
  readonly state: BrowserClientState | 'idle';
  /** Channels and filters subscribed to, whether or not the current connection confirmed them yet. */
  readonly subscriptions: string[];
  /**
   * Starts connecting; also starts again after `stopped` or `unauthenticated`, and then restores the
   * subscriptions that a connection had confirmed.
   */
  connect(): void;
  /**
   * Subscribes to a channel or filter and resolves when the server confirms. Every later connection
   * restores it until `unsubscribe` or `close`. Rejects with a `PortcullisClientError` whose `code`
   * is the server's (`forbidden`, `invalid_channel`, ...) or `request_timeout` or `not_connected`.
   */
  subscribe(channel: string, onMessage?: (message: ChannelMessage) => void): Promise<void>;
  /** Ends a subscription, so its callback gets no further message. */
  unsubscribe(channel: string): Promise<void>;
  /** Publishes a JSON value and resolves when the server confirms that it passed it to the subscribers. */
  publish(channel: string, data: unknown): Promise<void>;
  /** Calls `POST /session/refresh` now; resolves when the session is extended. */
  refresh(): Promise<void>;
  /** Stops: clears timers, removes every subscription and closes the socket with 1000. */
  close(): void;
}

// An application callback that throws is reported as an uncaught error, without breaking the client.
function callApp(callback: () => void): void {
  try {
    callback();
  } catch (error) {
    setTimeout(() => {
      throw error;
    });
  }
}

/** Subprotocol of the gateway; the CSRF token rides as a second offer. */
const applicationProtocol = 'portcullis.v1';
// Bounds each /session request, so a stalled request cannot stall reconnecting.
const sessionRequestTimeoutMs = 10_000;

/** The body of `GET /session` and, in part, of `POST /session/refresh`. */
interface SessionInfo {
  expires_at: number;
  csrf_token?: string;
}

type Outcome = { ok: true; session: SessionInfo } | { ok: false; unauthenticated: boolean; status?: number };

async function sessionRequest(path: string, init: RequestInit): Promise<Outcome> {
  let response: Response;
  try {
    response = await fetch(path, { ...init, credentials: 'same-origin', cache: 'no-store', signal: AbortSignal.timeout(sessionRequestTimeoutMs) });
  } catch {
    return { ok: false, unauthenticated: false };
  }
  if (response.status === 401) {
    return { ok: false, unauthenticated: true, status: 401 };
  }

  const body = response.ok ? await response.json().catch(() => null) as SessionInfo | null : null;
  if (!body || typeof body.expires_at !== 'number') {
    return { ok: false, unauthenticated: false, status: response.status };
  }
  return { ok: true, session: body };
}

function defaultUrl(): string {
  const url = new URL('/ws', location.href);
  url.protocol = 'wss:';
  return url.href;
}

/** The request of `POST /session/refresh`, which must carry the CSRF token. */
const refreshRequest = (csrfToken: string): RequestInit => ({ method: 'POST', headers: { 'X-CSRF-Token': csrfToken } });

/** One socket and what the client learned on it. */
interface SocketAttempt {
  welcomed: boolean;
  openedAtMs: number | null;
  /** Clamped `after_ms` of the latest `reconnect` frame on this socket, in milliseconds. */
  reconnectAfterMs: number | null;
}

/** The client behind `createBrowserClient`; one socket at a time, replaced on every reconnect. */
class BrowserConnection implements BrowserClient {
  private readonly options: BrowserClientOptions;
  private readonly backoff: Backoff;
  private readonly refreshBackoff: Backoff;
  private readonly channels: ChannelRequests;
  private current: BrowserClientState | 'idle' = 'idle';
  private socket: WebSocket | null = null;
  private csrfToken = '';
  private timing: TokenTiming | null = null;
  private refreshBeforeConnect = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshing: Promise<void> | null = null;
  // Bumped by connect() and finish(), so a run that awaited across them gives up.
  private generation = 0;

  constructor(options: BrowserClientOptions) {
    this.options = options;
    this.backoff = new Backoff(options.backoff);
    this.refreshBackoff = new Backoff(options.backoff);
    this.channels = new ChannelRequests(options, callApp);
  }

  get state(): BrowserClientState | 'idle' {
    return this.current;
  }

  get subscriptions(): string[] {
    return this.channels.subscriptions;
  }

  connect(): void {
    if (this.current !== 'idle' && this.current !== 'stopped' && this.current !== 'unauthenticated') {
      return;
    }
    this.generation += 1;
    this.backoff.reset();
    this.refreshBeforeConnect = false;
    this.channels.resume();
    void this.run('started');
  }

  subscribe(channel: string, onMessage?: (message: ChannelMessage) => void): Promise<void> {
    return this.channels.subscribe(channel, onMessage);
  }

  unsubscribe(channel: string): Promise<void> {
    return this.channels.unsubscribe(channel);
  }

  publish(channel: string, data: unknown): Promise<void> {
    return this.channels.publish(channel, data);
  }

  refresh(): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.refreshSession().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  close(): void {
    if (this.current !== 'stopped' && this.current !== 'unauthenticated') {
      this.finish({ state: 'stopped', reason: 'closed' });
      return;
    }
    this.channels.stop(true);
  }

  private async run(reason: string): Promise<void> {
    const generation = this.generation;
    this.transition({ state: 'connecting', reason });
    if (this.refreshBeforeConnect) {
      const refreshed = await sessionRequest('/session/refresh', refreshRequest(this.csrfToken));
      if (generation !== this.generation) {
        return;
      }
      if (!refreshed.ok && refreshed.unauthenticated) {
        this.finish({ state: 'unauthenticated', reason: 'login_required', status: 401 });
        return;
      }
      this.refreshBeforeConnect = false;
    }

    // Every attempt reads /session first: a browser hides why a handshake failed, but a 401 from
    // /session shows that the session has ended.
    const outcome = await sessionRequest('/session', { method: 'GET' });
    if (generation !== this.generation) {
      return;
    }
    if (!outcome.ok && outcome.unauthenticated) {
      this.finish({ state: 'unauthenticated', reason: 'login_required', status: 401 });
      return;
    }
    if (!outcome.ok) {
      this.retry('session_unavailable', { status: outcome.status });
      return;
    }

    this.remember(outcome.session);
    this.openSocket();
  }

  private openSocket(): void {
    const socket = new WebSocket(this.options.url ?? defaultUrl(), [applicationProtocol, `portcullis.csrf.${this.csrfToken}`]);
    const attempt: SocketAttempt = { welcomed: false, openedAtMs: null, reconnectAfterMs: null };
    this.socket = socket;

    socket.addEventListener('open', () => {
      attempt.openedAtMs = Date.now();
    });
    socket.addEventListener('message', (event: MessageEvent) => {
      if (typeof event.data === 'string') {
        this.receive(socket, attempt, event.data);
      }
    });
    socket.addEventListener('close', (event: CloseEvent) => {
      if (this.socket === socket) {
        this.closed(attempt, event);
      }
    });
  }

  private receive(socket: WebSocket, attempt: SocketAttempt, text: string): void {
    const parsed = parseFrameObject(text);
    const frame = parsed ? readControlFrame(parsed) : null;
    if (!frame) {
      // Frames outside portcullis.v1 are ignored, so a newer server can add types.
      if (parsed) {
        this.channels.receive(parsed);
      }
      return;
    }

    if (frame.type === 'welcome' && !attempt.welcomed) {
      attempt.welcomed = true;
      this.scheduleRefresh();
      this.channels.connected((request) => socket.send(request));
      this.transition({ state: 'open', reason: 'welcome', welcome: frame.welcome });
      return;
    }
    if (frame.type === 'auth_ok') {
      this.options.onTokenRefreshed?.(frame.expiresAt);
      return;
    }
    if (frame.type === 'reconnect') {
      attempt.reconnectAfterMs = frame.afterMs;
      return;
    }
    if (frame.type === 'expiring' && this.timing && mayRefreshNow(this.timing, Date.now())) {
      this.refreshSoon(0);
    }
  }

  private closed(attempt: SocketAttempt, event: CloseEvent): void {
    this.socket = null;
    clearTimeout(this.refreshTimer);
    this.channels.disconnected();
    if (attempt.welcomed && attempt.openedAtMs !== null && Date.now() - attempt.openedAtMs >= (this.options.stableOpenMs ?? 10_000)) {
      this.backoff.reset();
    }

    const decision = decideOnClose(event.code, event.reason);
    if (decision.action === 'stop') {
      this.finish({ state: 'stopped', reason: decision.reason, closeCode: event.code });
      return;
    }
    this.refreshBeforeConnect = decision.action === 'refresh_then_reconnect';
    this.retry(decision.reason, { closeCode: event.code }, attempt.reconnectAfterMs);
  }

  private async refreshSession(): Promise<void> {
    const outcome = await sessionRequest('/session/refresh', refreshRequest(this.csrfToken));
    if (outcome.ok) {
      this.remember(outcome.session);
      this.refreshBackoff.reset();
      this.scheduleRefresh();
      return;
    }
    if (outcome.unauthenticated) {
      this.finish({ state: 'unauthenticated', reason: 'login_required', status: 401 });
      return;
    }
    // The socket stays usable until the token expires; the server then closes it with 4401.
    if (this.current === 'open') {
      this.refreshSoon(this.refreshBackoff.next());
    }
  }

  private remember(session: SessionInfo): void {
    this.timing = { receivedAtMs: Date.now(), expiresAtMs: session.expires_at * 1000 };
    this.csrfToken = session.csrf_token ?? this.csrfToken;
  }

  private scheduleRefresh(): void {
    if (this.timing) {
      this.refreshSoon(refreshDelayMs(this.timing, this.options.refreshMarginSeconds ?? 60, Date.now()));
    }
  }

  private refreshSoon(delayMs: number): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => void this.refresh(), delayMs);
  }

  private retry(reason: string, detail: Pick<StateChange, 'closeCode' | 'status'> = {}, reconnectAfterMs: number | null = null): void {
    const retry = nextRetry(this.backoff, reconnectAfterMs);
    this.transition({ state: 'reconnecting', reason, ...retry, ...detail });
    this.reconnectTimer = setTimeout(() => void this.run(reason), retry.retryInMs);
  }

  private finish(change: StateChange<BrowserClientState>): void {
    this.generation += 1;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.refreshTimer);
    const socket = this.socket;
    this.socket = null;
    // Only close() removes the subscriptions. After a stop by the server or a logout, connect() restores them.
    this.channels.stop(change.reason === 'closed');
    this.transition(change);
    socket?.close(1000);
  }

  private transition(change: StateChange<BrowserClientState>): void {
    this.current = change.state;
    this.options.onStateChange?.(change);
  }
}

/**
 * Creates a browser client: it reads `/session`, opens the socket with the CSRF subprotocol,
 * refreshes the session before it expires, and reconnects with full-jitter backoff, or after the
 * delay that a stopping server requests in a `reconnect` frame. A 401 from `/session` or
 * `/session/refresh` ends in `unauthenticated`; close code 4403 ends in `stopped`.
 */
export function createBrowserClient(options: BrowserClientOptions): BrowserClient {
  return new BrowserConnection(options);
}
