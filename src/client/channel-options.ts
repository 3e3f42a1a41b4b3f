// Browser-safe: no Node imports, because the browser client bundles this file. The public options,
// defaults and callback events of the channel methods that both SDKs share.

import type { ChannelMessage } from './channel-frames.ts';
import type { PortcullisClientError } from './policy.ts';

/** Default time a channel request may wait for its reply, connecting included, in milliseconds. */
export const defaultRequestTimeoutMs = 10_000;

/** Default maximum of outgoing frames per second. Keep it below the server's `--message-rate` (default 50). */
export const defaultMaxMessagesPerSecond = 40;

/** Default maximum size of an outgoing frame in bytes: the server's default `--max-payload`, above which it closes the connection with 1009. */
export const defaultMaxOutgoingFrameBytes = 65_536;

/**
 * Codes the SDKs reject channel requests with besides the server's own (`forbidden`,
 * `invalid_channel`, `too_many_subscriptions`, ...).
 */
export type ChannelRequestCode = 'request_timeout' | 'connection_closed' | 'not_connected' | 'unsubscribed' | 'payload_too_large' | 'invalid_message';

/** A subscription the server confirmed. `restored` is true when a new connection restored it. */
export interface SubscribedEvent {
  channel: string;
  restored: boolean;
}

/** A subscription that ended without `unsubscribe`, because the server dropped it or rejected its restore. */
export interface SubscriptionEndedEvent {
  channel: string;
  /** The server's reason or error code, such as `forbidden`. */
  code: string;
}

/** Callbacks and limits of channel requests, shared by the options of both SDKs. */
export interface ChannelOptions {
  /** Receives every `message` frame, before the callbacks of the matching subscriptions. */
  onMessage?: (message: ChannelMessage) => void;
  /** Called whenever the server confirms a subscription, including each restore after a reconnect. */
  onSubscribed?: (event: SubscribedEvent) => void;
  /** Called when the server ends a subscription or rejects its restore. The SDK has then removed the subscription. */
  onSubscriptionEnded?: (event: SubscriptionEndedEvent) => void;
  /** Receives `error` frames that match no waiting request, such as `invalid_json` with `id: null`. */
  onError?: (error: PortcullisClientError) => void;
  /** Time a request may wait for its reply, connecting included, in milliseconds. Default 10000. */
  requestTimeoutMs?: number;
  /** Maximum number of frames the client sends per second. Default 40. */
  maxMessagesPerSecond?: number;
  /** Maximum size of an outgoing frame in bytes. A larger publish is rejected with `payload_too_large`. Default 65536. */
  maxOutgoingFrameBytes?: number;
}
