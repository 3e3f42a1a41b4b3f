import type { BackoffOptions } from './backoff.ts';
import type { ChannelOptions } from './channels.ts';
import type { DpopOption } from './dpop.ts';
import type { StateChange } from './policy.ts';
import type { DeviceCredentials, RefreshTokenStore } from './token-source.ts';

/** A pino-compatible logger. The client logs codes, states and ids; never a token or secret. */
export interface ClientLogger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

/** Options of a `DeviceClient`. The channel callbacks and limits come from `ChannelOptions`. */
export interface DeviceClientOptions extends ChannelOptions {
  /** Gateway endpoint, e.g. `wss://localhost:8443/ws`. */
  url: string;
  /** Issuer origin for discovery and the token endpoint, e.g. `https://localhost:8443`. */
  issuer: string;
  clientId: string;
  credentials: DeviceCredentials;
  /** With a store, tokens come from the rotating `refresh_token` grant; without, from `client_credentials`. */
  refreshTokenStore?: RefreshTokenStore;
  /**
   * Binds tokens to a DPoP key (RFC 9449): `true` generates a non-extractable ES256 key that lives as
   * long as the client, or pass a key pair, e.g. one kept in a secure element. A refresh token bound
   * to a generated key is useless after a restart, so with a store pass a key that is kept with it.
   */
  dpop?: DpopOption;
  /** Extra trusted CA certificate in PEM, e.g. the development CA `<dataDir>/ca.pem`. */
  ca?: string;
  /** Receives every text frame as it arrived, control frames included; for tools such as the CLI. */
  onFrame?: (text: string) => void;
  onStateChange?: (change: StateChange) => void;
  /** Called after the server confirmed an in-band refresh, with the new expiry in epoch seconds. */
  onTokenRefreshed?: (expiresAt: number) => void;
  logger?: ClientLogger;
  /** Seconds before expiry at which the token is refreshed in band. Default 60. */
  refreshMarginSeconds?: number;
  /** Reconnect delays. Default: base 500 ms, cap 30 s, `Math.random`. */
  backoff?: BackoffOptions;
  /** Time allowed for the upgrade and the welcome frame, in milliseconds. Default 10000. */
  handshakeTimeoutMs?: number;
  /** An open connection that lasted this long resets the backoff, in milliseconds. Default 10000. */
  stableOpenMs?: number;
  /** Largest frame accepted from the server, in bytes. Default 1 MiB. */
  maxPayloadBytes?: number;
}

/** Wraps the channel callbacks of a device so that an ended subscription and an unmatched `error` frame are also logged. */
export function withChannelLogging(options: DeviceClientOptions, logger: ClientLogger): ChannelOptions {
  return {
    ...options,
    onSubscriptionEnded: (event) => {
      logger.warn({ event: 'client.subscription_ended', client_id: options.clientId, channel: event.channel, code: event.code }, 'the server ended a subscription');
      options.onSubscriptionEnded?.(event);
    },
    onError: (error) => {
      logger.warn({ event: 'client.frame_rejected', client_id: options.clientId, code: error.code }, 'the server rejected a frame without naming its request');
      options.onError?.(error);
    },
  };
}
