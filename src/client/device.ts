import WebSocket from 'ws';

import { applicationProtocol, rejectionOf, startAttempt, type Attempt } from './attempt.ts';
import { Backoff, nextRetry, type BackoffOptions } from './backoff.ts';
import { authorizeDevice, type DeviceAuthorizationOptions, type DeviceAuthorizationPrompt } from './device-authorization.ts';
import { ChannelRequests, type ChannelMessage, type ChannelOptions, type ChannelRequestCode, type Publisher, type SubscribedEvent, type SubscriptionEndedEvent } from './channels.ts';
import { DpopSigner, generateDpopKey, NonceCache, type DpopKeyPair, type DpopOption } from './dpop.ts';
import {
  decideOnClose,
  decideOnRejection,
  dpopProofErrors,
  mayRefreshNow,
  parseFrameObject,
  PortcullisClientError,
  readControlFrame,
  refreshDelayMs,
  type ClientState,
  type Decision,
  type Rejection,
  type StateChange,
  type Welcome,
} from './policy.ts';
import type { ClientCertificate } from './trust.ts';
import { withChannelLogging, type ClientLogger, type DeviceClientOptions } from './device-options.ts';
import { authFrame, handshakeHeaders, type Presenter } from './token-presentation.ts';
import { TokenSource, type AccessToken, type DeviceCredentials, type RefreshTokenStore } from './token-source.ts';

export { applicationProtocol, authorizeDevice, Backoff, generateDpopKey, PortcullisClientError };
export type { BackoffOptions, ClientCertificate, ClientLogger, ClientState, DeviceAuthorizationOptions, DeviceAuthorizationPrompt, DeviceClientOptions, DeviceCredentials, DpopKeyPair, DpopOption, RefreshTokenStore, StateChange, Welcome };
export type { ChannelMessage, ChannelOptions, ChannelRequestCode, Publisher, SubscribedEvent, SubscriptionEndedEvent };

const silentLogger: ClientLogger = { debug() {}, info() {}, warn() {} };

/**
 * A long-lived device connection to a Portcullis gateway. It gets tokens with openid-client,
 * refreshes them in band before they expire, and reconnects with full-jitter backoff or after the
 * delay that a stopping server requests. Close codes and handshake statuses decide between
 * reconnecting and stopping for good. Every new connection restores the channel subscriptions.
 */
export class DeviceClient {
  private readonly options: DeviceClientOptions;
  private readonly logger: ClientLogger;
  private readonly tokens: TokenSource;
  private readonly presenter: Presenter;
  /** True once a handshake was retried with a fresh DPoP proof; reset by the next welcome. */
  private proofRetried = false;
  private readonly backoff: Backoff;
  private readonly refreshBackoff: Backoff;
  private readonly channels: ChannelRequests;
  private current: ClientState | 'idle' = 'idle';
  private attempt: Attempt | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private refreshTimer: NodeJS.Timeout | null = null;
  private welcomeTimer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private closing: Promise<void> | null = null;

  constructor(options: DeviceClientOptions) {
    if (!/^wss:\/\//i.test(options.url) || !URL.canParse(options.url)) {
      throw new PortcullisClientError('invalid_url', `url must be a wss:// URL such as wss://localhost:8443/ws, got ${JSON.stringify(options.url)}.`, false);
    }
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    const dpop = options.dpop ? new DpopSigner(options.dpop) : null;
    this.tokens = new TokenSource({ ...options, dpop: dpop ?? undefined });
    this.presenter = { url: options.url, clientId: options.clientId, dpop, nonces: new NonceCache() };
    this.backoff = new Backoff(options.backoff);
    this.refreshBackoff = new Backoff(options.backoff);
    this.channels = new ChannelRequests(withChannelLogging(options, this.logger), (callback) => this.notify(callback));
  }

  /** Current state; `idle` before `connect`. */
  get state(): ClientState | 'idle' {
    return this.current;
  }

  /**
   * Starts connecting; later failures are reported through `onStateChange`, not thrown. A stopped
   * client cannot start again: create a new one.
   */
  connect(): void {
    if (this.current !== 'idle') {
      return;
    }
    this.openGuarded('started');
  }

  /** Channels and filters subscribed to, whether or not the current connection confirmed them yet. */
  get subscriptions(): string[] {
    return this.channels.subscriptions;
  }

  /**
   * Subscribes to a channel or filter and resolves when the server confirms. Every later connection
   * restores it until `unsubscribe`. Rejects with a `PortcullisClientError` whose `code` is the
   * server's (`forbidden`, `invalid_channel`, ...) or `request_timeout` or `not_connected`.
   */
  subscribe(channel: string, onMessage?: (message: ChannelMessage) => void): Promise<void> {
    return this.channels.subscribe(channel, onMessage);
  }

  /** Ends a subscription, so its callback gets no further message. */
  unsubscribe(channel: string): Promise<void> {
    return this.channels.unsubscribe(channel);
  }

  /** Publishes a JSON value and resolves when the server confirms that it passed it to the subscribers. */
  publish(channel: string, data: unknown): Promise<void> {
    return this.channels.publish(channel, data);
  }

  /**
   * Gets a new access token and, on an open connection, sends it in band and waits for `auth_ok`
   * or the end of the connection. Concurrent calls share one token request.
   */
  refresh(): Promise<void> {
    if (this.current === 'stopped') {
      return Promise.reject(new PortcullisClientError('closed', 'The client is stopped.', false));
    }
    if (!this.refreshing) {
      this.refreshing = this.refreshInBand().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  /**
   * Returns the JWK SHA-256 thumbprint (RFC 7638) of the DPoP key, which every token of this client
   * carries as `cnf.jkt`, or null without the `dpop` option. Rejects with `invalid_dpop_key` for a
   * bad key pair.
   */
  async dpopThumbprint(): Promise<string | null> {
    return this.presenter.dpop ? await this.presenter.dpop.thumbprint() : null;
  }

  /** Stops for good: clears every timer, closes the socket with 1000 and releases HTTP connections. */
  close(): Promise<void> {
    this.stop({ state: 'stopped', reason: 'closed' });
    return this.closing!;
  }

  // A bug here must end in a `stopped` state, not in an unhandled rejection.
  private openGuarded(reason: string): void {
    this.open(reason).catch((error: unknown) => {
      this.logger.warn({ event: 'client.failed', client_id: this.options.clientId, type: (error as Error)?.name }, 'connecting failed with an unexpected error');
      this.stop({ state: 'stopped', reason: 'client_error' });
    });
  }

  private async open(reason: string): Promise<void> {
    this.reconnectTimer = null;
    this.transition({ state: 'connecting', reason });

    let token: AccessToken;
    let fresh: boolean;
    let headers: Record<string, string>;
    try {
      ({ token, fresh } = await this.usableToken());
      headers = await handshakeHeaders(this.presenter, token);
    } catch (error) {
      this.follow(this.tokenDecision(error), {});
      return;
    }
    if (this.current !== 'connecting') {
      return;
    }

    const attempt = startAttempt(this.options, headers, fresh);
    this.attempt = attempt;
    this.watch(attempt);
  }

  /** The cached token while it is not yet due for refresh, otherwise a new one. */
  private async usableToken(): Promise<{ token: AccessToken; fresh: boolean }> {
    const cached = this.tokens.current;
    if (cached && refreshDelayMs(cached, this.marginSeconds, Date.now()) > 0) {
      return { token: cached, fresh: false };
    }

    return { token: await this.tokens.fetch(), fresh: true };
  }

  private watch(attempt: Attempt): void {
    const { socket } = attempt;

    socket.once('upgrade', (response) => {
      this.presenter.nonces.remember(this.options.url, response.headers['dpop-nonce']);
    });

    socket.once('unexpected-response', (_request, response) => {
      this.presenter.nonces.remember(this.options.url, response.headers['dpop-nonce']);
      attempt.rejection = rejectionOf(response);
      response.resume();
      socket.terminate();
    });

    socket.once('open', () => {
      attempt.openedAtMs = Date.now();
      // The upgrade alone is not success: the server names the connection in its welcome frame.
      this.welcomeTimer = setTimeout(() => socket.terminate(), this.options.handshakeTimeoutMs ?? 10_000);
    });

    socket.on('message', (data, isBinary) => {
      if (!isBinary) {
        this.receive(attempt, data.toString());
      }
    });

    // Every failure also ends in 'close', which decides what happens next.
    socket.on('error', (error: NodeJS.ErrnoException) => {
      this.logger.debug({ event: 'client.socket_failed', code: error.code ?? error.name }, 'socket error');
    });

    socket.once('close', (code, reason) => this.closed(attempt, code, reason.toString()));
  }

  private receive(attempt: Attempt, text: string): void {
    this.notify(() => this.options.onFrame?.(text));
    const parsed = parseFrameObject(text);
    const frame = parsed ? readControlFrame(parsed) : null;
    if (!frame) {
      if (!parsed || !this.channels.receive(parsed)) {
        this.logger.debug({ event: 'client.frame_ignored', client_id: this.options.clientId }, 'ignored a frame that is not part of portcullis.v1');
      }
      return;
    }

    if (frame.type === 'welcome' && !attempt.welcome) {
      this.clearTimer('welcomeTimer');
      attempt.welcome = frame.welcome;
      this.proofRetried = false;
      this.scheduleRefresh();
      this.channels.connected((request) => attempt.socket.send(request));
      this.transition({ state: 'open', reason: 'welcome', welcome: frame.welcome });
      return;
    }
    if (frame.type === 'auth_ok') {
      attempt.authWaiters.splice(0).forEach((resolve) => resolve());
      this.logger.info({ event: 'client.refreshed', client_id: this.options.clientId, expires_at: frame.expiresAt }, 'token refreshed in band');
      this.notify(() => this.options.onTokenRefreshed?.(frame.expiresAt));
      return;
    }
    if (frame.type === 'reconnect') {
      attempt.reconnectAfterMs = frame.afterMs;
      return;
    }
    const token = this.tokens.current;
    if (frame.type === 'expiring' && token && mayRefreshNow(token, Date.now())) {
      this.refreshSoon(0);
    }
  }

  private closed(attempt: Attempt, code: number, reason: string): void {
    attempt.authWaiters.splice(0).forEach((resolve) => resolve());
    if (this.attempt !== attempt) {
      return;
    }
    this.attempt = null;
    this.clearTimer('welcomeTimer');
    this.clearTimer('refreshTimer');
    this.channels.disconnected();
    if (this.current === 'stopped') {
      return;
    }

    if (attempt.welcome && attempt.openedAtMs !== null && Date.now() - attempt.openedAtMs >= (this.options.stableOpenMs ?? 10_000)) {
      this.backoff.reset();
    }
    const decision = attempt.rejection ? this.rejectionDecision(attempt.rejection, attempt.tokenWasFresh) : decideOnClose(code, reason);
    this.follow(decision, attempt.rejection ? { status: attempt.rejection.status } : { closeCode: code }, attempt.reconnectAfterMs);
  }

  private follow(decision: Decision, detail: Pick<StateChange, 'closeCode' | 'status'>, reconnectAfterMs: number | null = null): void {
    if (this.current === 'stopped') {
      return;
    }
    if (decision.action === 'stop') {
      this.stop({ state: 'stopped', reason: decision.reason, ...detail });
      return;
    }

    if (decision.action === 'refresh_then_reconnect') {
      this.tokens.invalidate();
    }
    const notBeforeMs = decision.action === 'reconnect' ? decision.notBeforeMs ?? 0 : 0;
    const retry = nextRetry(this.backoff, reconnectAfterMs, notBeforeMs);
    this.transition({ state: 'reconnecting', reason: decision.reason, ...retry, ...detail });
    this.reconnectTimer = setTimeout(() => this.openGuarded(decision.reason), retry.retryInMs);
  }

  // Only one handshake in a row is retried for its DPoP proof alone. A second such rejection counts
  // against the token, so the client gets a new token or stops.
  private rejectionDecision(rejection: Rejection, tokenWasFresh: boolean): Decision {
    const decision = decideOnRejection(rejection, tokenWasFresh, this.proofRetried);
    if (rejection.code !== null && dpopProofErrors.has(rejection.code)) {
      this.proofRetried = true;
    }
    return decision;
  }

  private tokenDecision(error: unknown): Decision {
    const failure = error instanceof PortcullisClientError ? error : new PortcullisClientError('token_request_failed', 'The token request failed.', true);
    return failure.retryable ? { action: 'reconnect', reason: failure.code } : { action: 'stop', reason: failure.code };
  }

  private async refreshInBand(): Promise<void> {
    const token = await this.tokens.fetch();
    const frame = await authFrame(this.presenter, token);
    const attempt = this.attempt;
    if (this.current !== 'open' || !attempt?.welcome || attempt.socket.readyState !== WebSocket.OPEN) {
      return;
    }

    const confirmed = new Promise<void>((resolve) => attempt.authWaiters.push(resolve));
    this.channels.sendControl(frame);
    await confirmed;
    this.refreshBackoff.reset();
    this.scheduleRefresh();
  }

  private scheduleRefresh(): void {
    const token = this.tokens.current;
    if (token) {
      this.refreshSoon(refreshDelayMs(token, this.marginSeconds, Date.now()));
    }
  }

  /** Runs `refresh` after `delayMs`; a failure that may pass is retried with backoff, any other stops. */
  private refreshSoon(delayMs: number): void {
    this.clearTimer('refreshTimer');
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refresh().catch((error: unknown) => {
        const decision = this.tokenDecision(error);
        this.logger.warn({ event: 'client.refresh_failed', client_id: this.options.clientId, code: decision.reason }, 'in-band refresh failed');
        if (decision.action === 'stop') {
          this.stop({ state: 'stopped', reason: decision.reason });
          return;
        }
        // The connection stays usable until the old token expires; the server then closes it with 4401.
        if (this.current === 'open') {
          this.refreshSoon(this.refreshBackoff.next());
        }
      });
    }, delayMs);
    // An open socket keeps the process alive; this timer alone must not.
    this.refreshTimer.unref();
  }

  private stop(change: StateChange): void {
    if (this.current === 'stopped') {
      return;
    }
    this.clearTimer('reconnectTimer');
    this.clearTimer('refreshTimer');
    this.clearTimer('welcomeTimer');
    const attempt = this.attempt;
    this.attempt = null;
    this.channels.stop(true);
    this.transition(change);
    if (attempt) {
      attempt.authWaiters.splice(0).forEach((resolve) => resolve());
      if (attempt.socket.readyState === WebSocket.OPEN) {
        attempt.socket.close(1000);
      } else {
        attempt.socket.terminate();
      }
    }
    this.closing = this.tokens.close();
  }

  private transition(change: StateChange): void {
    this.current = change.state;
    this.logger.info({
      event: 'client.state_changed',
      client_id: this.options.clientId,
      state: change.state,
      reason: change.reason,
      close_code: change.closeCode,
      status: change.status,
      retry_in_ms: change.retryInMs,
      retry_hinted: change.retryHinted,
      connection_id: change.welcome?.connectionId,
    }, `device client ${change.state}`);
    this.notify(() => this.options.onStateChange?.(change));
  }

  // A throwing application callback must not break the reconnect logic that called it.
  private notify(callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.logger.warn({ event: 'client.callback_failed', type: (error as Error)?.name }, 'an application callback threw');
    }
  }

  private clearTimer(name: 'reconnectTimer' | 'refreshTimer' | 'welcomeTimer'): void {
    const timer = this[name];
    if (timer) {
      clearTimeout(timer);
      this[name] = null;
    }
  }

  private get marginSeconds(): number {
    return this.options.refreshMarginSeconds ?? 60;
  }
}
