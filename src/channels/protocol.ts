import type { RawData } from 'ws';

import { errorCatalogue, type ErrorCode } from '../errors.ts';
import { exceedsDataDepth } from './data.ts';

/** A message id: what the client chose, echoed in the reply. */
export type MessageId = string | number;

/** A frame a client sends, after validation. */
export type ClientFrame =
  | { type: 'subscribe'; id: MessageId; channel: string }
  | { type: 'unsubscribe'; id: MessageId; channel: string }
  | { type: 'publish'; id: MessageId; channel: string; data: unknown }
  | { type: 'auth'; id: MessageId | null; token: string; dpop: string | null };

/** A frame that could not be read: the error to send, and the id to echo when one was readable. */
export interface FrameProblem {
  problem: ErrorCode;
  id: MessageId | null;
}

/** Maximum length of a string id in characters. A longer id is rejected, not echoed. */
export const maxIdLength = 64;

const channelTypes = new Set(['subscribe', 'unsubscribe', 'publish']);

function readId(value: unknown): MessageId | null {
  if (typeof value === 'string' && value.length > 0 && value.length <= maxIdLength) {
    return value;
  }
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) {
    return value;
  }
  return null;
}

function textOf(data: RawData): string {
  if (Buffer.isBuffer(data)) {
    return data.toString('utf8');
  }
  return Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
}

/**
 * Reads one text frame of the `portcullis.v1` protocol. Fields besides those of the type are
 * ignored, so later versions may add some. Returns the frame or the problem to report.
 */
export function parseClientFrame(data: RawData): ClientFrame | FrameProblem {
  let parsed: unknown;
  try {
    parsed = JSON.parse(textOf(data));
  } catch {
    return { problem: 'invalid_json', id: null };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { problem: 'invalid_message', id: null };
  }

  const frame = parsed as Record<string, unknown>;
  const id = readId(frame.id);
  if (frame.type === 'auth') {
    // `id` is optional on `auth`, which predates the channel protocol.
    if (frame.id !== undefined && id === null) {
      return { problem: 'invalid_id', id: null };
    }
    // `dpop` carries the proof for a DPoP-bound token (RFC 9449), made as for the handshake.
    if (typeof frame.token !== 'string' || (frame.dpop !== undefined && typeof frame.dpop !== 'string')) {
      return { problem: 'invalid_message', id };
    }
    return { type: 'auth', id, token: frame.token, dpop: typeof frame.dpop === 'string' ? frame.dpop : null };
  }
  if (typeof frame.type !== 'string' || !channelTypes.has(frame.type)) {
    return { problem: 'unknown_type', id };
  }
  if (id === null) {
    return { problem: 'invalid_id', id: null };
  }

  if (typeof frame.channel !== 'string') {
    return { problem: 'invalid_message', id };
  }
  if (frame.type === 'publish') {
    if (!('data' in frame)) {
      return { problem: 'invalid_message', id };
    }
    return exceedsDataDepth(frame.data) ? { problem: 'data_too_deep', id } : { type: 'publish', id, channel: frame.channel, data: frame.data };
  }
  return { type: frame.type as 'subscribe' | 'unsubscribe', id, channel: frame.channel };
}

/** Serialises an `error` frame; `id` is null when the failing frame had no readable id. */
export function errorFrame(id: MessageId | null, code: ErrorCode): string {
  return JSON.stringify({ type: 'error', id, code, description: errorCatalogue[code].description });
}

/** Serialises the reply that confirms a request: `subscribed`, `unsubscribed` or `published`. */
export function replyFrame(type: 'subscribed' | 'unsubscribed' | 'published', id: MessageId, channel: string): string {
  return JSON.stringify({ type, id, channel });
}
