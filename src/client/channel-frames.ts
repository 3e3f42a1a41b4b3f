// Browser-safe: no Node imports, because the browser client bundles this file. The frames of the
// `portcullis.v1` channel protocol as both SDKs read and write them, and the pacing of outgoing frames.

import { parseChannelFilter, parseChannelName } from '../channels/names.ts';
import { PortcullisClientError } from './policy.ts';

/** The client and subject of the token that published a message, or `portcullis` and `operator` for an operator's publish. */
export interface Publisher {
  clientId: string;
  sub: string;
}

/** A message the server delivered because it matched a subscription of this connection. */
export interface ChannelMessage {
  channel: string;
  /** The JSON value the publisher sent. */
  data: unknown;
  publisher: Publisher;
  /** Server time of publication, in epoch milliseconds. */
  timestamp: number;
}

/** A channel frame from the server, after validation. */
export type ServerChannelFrame =
  | { type: 'subscribed' | 'unsubscribed' | 'published'; id: number; channel: string }
  | { type: 'subscription_ended'; channel: string; reason: string }
  | { type: 'error'; id: number | null; code: string; description: string }
  | { type: 'message'; message: ChannelMessage };

const replyTypes = new Set(['subscribed', 'unsubscribed', 'published']);

// The SDK only sends integer ids, so a reply with any other id cannot belong to one of its requests.
function requestId(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

function readMessage(frame: Record<string, unknown>): ChannelMessage | null {
  const publisher = frame.publisher as Record<string, unknown> | null | undefined;
  if (typeof frame.channel !== 'string' || !publisher || typeof publisher !== 'object' || typeof frame.timestamp !== 'number') {
    return null;
  }
  return {
    channel: frame.channel,
    data: frame.data,
    publisher: { clientId: String(publisher.client_id ?? ''), sub: String(publisher.sub ?? '') },
    timestamp: frame.timestamp,
  };
}

/**
 * Reads a parsed server frame of the channel protocol: a reply, an `error`, a `message`, or an
 * `unsubscribed` frame with `id: null` that ends a subscription. Returns null for any other frame.
 */
export function readChannelFrame(frame: Record<string, unknown>): ServerChannelFrame | null {
  if (frame.type === 'message') {
    const message = readMessage(frame);
    return message ? { type: 'message', message } : null;
  }
  if (frame.type === 'error' && typeof frame.code === 'string') {
    const description = typeof frame.description === 'string' ? frame.description : '';
    return { type: 'error', id: requestId(frame.id), code: frame.code, description };
  }
  if (typeof frame.type !== 'string' || !replyTypes.has(frame.type) || typeof frame.channel !== 'string') {
    return null;
  }

  if (frame.type === 'unsubscribed' && frame.id === null) {
    return { type: 'subscription_ended', channel: frame.channel, reason: typeof frame.reason === 'string' ? frame.reason : 'unsubscribed' };
  }
  const id = requestId(frame.id);
  if (id === null) {
    return null;
  }
  return { type: frame.type as 'subscribed' | 'unsubscribed' | 'published', id, channel: frame.channel };
}

// Codes after which the same request may succeed later without any change by the application.
const retryableCodes = new Set(['rate_limited', 'request_timeout', 'connection_closed', 'server_error']);

/** Builds the rejection of a channel request. Its message names the action, the channel and the code. */
export function channelError(code: string, action: string, channel: string | null, detail = ''): PortcullisClientError {
  const target = channel === null ? action : `${action} "${channel}"`;
  const message = detail ? `${target} failed with ${code}: ${detail}` : `${target} failed with ${code}.`;
  return new PortcullisClientError(code, message, retryableCodes.has(code));
}

/** Returns the rejection for a subscription filter the server would reject as `invalid_channel`, or null. */
export function checkChannelFilter(action: string, channel: string): PortcullisClientError | null {
  if (parseChannelFilter(channel)) {
    return null;
  }
  return channelError('invalid_channel', action, null, 'use lower-case [a-z0-9_-] segments separated by "/", "*" for one segment and a final "#" for any rest, at most 8 segments and 200 bytes.');
}

/** Returns the rejection for a publish channel the server would reject as `invalid_channel`, or null. */
export function checkChannelName(channel: string): PortcullisClientError | null {
  if (parseChannelName(channel)) {
    return null;
  }
  return channelError('invalid_channel', 'publish', null, 'use lower-case [a-z0-9_-] segments separated by "/", without wildcards, at most 8 segments and 200 bytes.');
}

/** Serialises the `data` of a publish, or returns null for a value JSON cannot carry (undefined, a function, a BigInt, a cycle). */
export function serialiseData(data: unknown): string | null {
  try {
    return JSON.stringify(data) ?? null;
  } catch {
    return null;
  }
}

/** Serialises a `subscribe` or `unsubscribe` frame. */
export function requestFrame(type: 'subscribe' | 'unsubscribe', id: number, channel: string): string {
  return JSON.stringify({ type, id, channel });
}

/** Serialises a `publish` frame around `data` that `serialiseData` already serialised. */
export function publishFrame(id: number, channel: string, dataJson: string): string {
  return `{"type":"publish","id":${id},"channel":${JSON.stringify(channel)},"data":${dataJson}}`;
}

const encoder = new TextEncoder();

/** Size of a text frame on the wire, in bytes: its UTF-8 length. */
export function frameBytes(text: string): number {
  return encoder.encode(text).length;
}

/**
 * A token bucket for outgoing frames. The server rejects a frame sent past its `--message-rate`
 * (default 50 per second) with a `rate_limited` error, and the request then fails or is sent again.
 * Pacing below that rate avoids both, for example when a reconnect restores 100 subscriptions at once.
 */
export class SendPacer {
  private tokens: number;
  private updatedAtMs: number;
  private readonly burst: number;

  constructor(private readonly ratePerSecond: number, private readonly now: () => number = Date.now) {
    if (!(ratePerSecond > 0) || !Number.isFinite(ratePerSecond)) {
      throw new RangeError(`maxMessagesPerSecond must be a positive finite number, got ${ratePerSecond}`);
    }
    // The burst is half a second's worth, because a burst as large as the server's own bucket could
    // exceed it after network delays bunch frames together.
    this.burst = Math.max(1, Math.floor(ratePerSecond / 2));
    this.tokens = this.burst;
    this.updatedAtMs = now();
  }

  /** Takes a token for one frame. Returns 0 when one was available, otherwise the milliseconds until one is. */
  take(): number {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.updatedAtMs) / 1000) * this.ratePerSecond);
    this.updatedAtMs = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.ratePerSecond) * 1000);
  }
}
