import type { Logger } from 'pino';

import type { ChannelBroker, ChannelMessage } from '../channels/broker.ts';
import { exceedsDataDepth } from '../channels/data.ts';
import { parseChannelName } from '../channels/names.ts';
import type { ErrorCode } from '../errors.ts';
import type { RedisLink } from './redis-link.ts';
import { ThrottledWarning } from './throttled-warning.ts';

/**
 * Bytes an envelope may take beyond `maxPayloadBytes`: the node id (36), a channel name (at most 200),
 * the publisher's client id and subject (at most 64 each in the stores), the timestamp and the JSON
 * punctuation, with room to spare.
 */
export const envelopeAllowanceBytes = 1024;

/** Maximum length of a publisher client id or subject accepted from another node. */
const maxPublisherFieldLength = 256;

/** Settings of the message bridge. */
export interface MessageBridgeOptions {
  link: RedisLink;
  broker: ChannelBroker;
  /** Pub/sub channel shared by every node of the deployment. */
  channel: string;
  /** This node's id, which marks its own messages when Redis sends them back. */
  nodeId: string;
  /** The node's `maxPayloadBytes`; a message whose data could not have come in a frame of this size is dropped. */
  maxPayloadBytes: number;
  logger: Logger;
}

/** A message read from Redis, or the code of the check it failed. */
type Received = { node: string; message: ChannelMessage } | { problem: ErrorCode; node?: string };

/**
 * Carries channel messages between nodes. Every message published on this node goes to one Redis
 * channel in a JSON envelope `{node, channel, data, publisher, timestamp}`. Every envelope from
 * another node passes the checks of a local publish (size, channel name, data depth) and then goes to
 * the local subscribers through `ChannelBroker.deliverLocally`, which does not forward it again.
 *
 * Redis pub/sub hands each envelope to the nodes subscribed at that moment, and this bridge queues
 * nothing while disconnected, so delivery across nodes is at most once. A message published while
 * Redis is unavailable reaches only this node's subscribers. It is counted in `undelivered` and is
 * never replayed.
 */
export class MessageBridge {
  private undeliveredCount = 0;
  private readonly maxEnvelopeBytes: number;
  private readonly oversizedWarning: ThrottledWarning;
  private readonly publishWarning: ThrottledWarning;
  private readonly rejectedWarnings = new Map<ErrorCode, ThrottledWarning>();
  private stopObserving: (() => void) | null = null;

  constructor(private readonly options: MessageBridgeOptions) {
    this.maxEnvelopeBytes = options.maxPayloadBytes + envelopeAllowanceBytes;
    this.oversizedWarning = new ThrottledWarning(options.logger);
    this.publishWarning = new ThrottledWarning(options.logger);
  }

  /** Messages published on this node that did not reach Redis since the last `takeUndelivered`. */
  get undelivered(): number {
    return this.undeliveredCount;
  }

  /** Starts forwarding local messages and delivering those of other nodes. */
  start(): void {
    this.options.link.onMessage(this.options.channel, (payload) => this.receive(payload));
    this.stopObserving = this.options.broker.observe((message) => this.forward(message));
  }

  /** Stops forwarding local messages. Messages from other nodes stop when the link closes. */
  stop(): void {
    this.stopObserving?.();
    this.stopObserving = null;
  }

  /** Returns the number of undelivered messages and starts counting again from 0. */
  takeUndelivered(): number {
    const count = this.undeliveredCount;
    this.undeliveredCount = 0;
    return count;
  }

  private forward(message: ChannelMessage): void {
    const { link, channel, nodeId } = this.options;
    if (!link.available) {
      this.undeliveredCount += 1;
      return;
    }

    const payload = JSON.stringify({ node: nodeId, channel: message.channel, data: message.data, publisher: message.publisher, timestamp: message.timestamp });
    // JSON.stringify can write a number longer than the client did (1e20 becomes 21 digits), so a
    // message that passed the frame limit can still be too large for the other nodes' check.
    const bytes = Buffer.byteLength(payload);
    if (bytes > this.maxEnvelopeBytes) {
      this.oversizedWarning.warn({ event: 'cluster.message_too_large', channel: message.channel, bytes }, 'a message is too large for other nodes and reached only this node');
      return;
    }

    link.commands.publish(channel, payload).catch((error: unknown) => {
      // Usually the connection dropped while the message was in flight, and the link logs the outage.
      this.undeliveredCount += 1;
      this.publishWarning.warn({ event: 'cluster.publish_failed', channel: message.channel, err: error }, 'publishing a message to Redis failed; it reached only this node');
    });
  }

  private receive(payload: Buffer): void {
    const received = this.read(payload);
    if ('problem' in received) {
      this.warnRejected(received.problem, received.node);
      return;
    }
    if (received.node === this.options.nodeId) {
      return;
    }

    this.options.broker.deliverLocally(received.message);
  }

  private read(payload: Buffer): Received {
    if (payload.length > this.maxEnvelopeBytes) {
      return { problem: 'payload_too_large' };
    }

    let envelope: unknown;
    try {
      envelope = JSON.parse(payload.toString('utf8'));
    } catch {
      return { problem: 'invalid_request' };
    }
    if (envelope === null || typeof envelope !== 'object' || typeof (envelope as { node?: unknown }).node !== 'string') {
      return { problem: 'invalid_request' };
    }

    const { node, channel, data, publisher, timestamp } = envelope as Record<string, unknown>;
    const nodeId = node as string;
    if (!parseChannelName(channel)) {
      return { problem: 'invalid_channel', node: nodeId };
    }
    if (!Object.hasOwn(envelope, 'data') || !isPublisher(publisher) || typeof timestamp !== 'number' || !Number.isFinite(timestamp)) {
      return { problem: 'invalid_request', node: nodeId };
    }
    if (exceedsDataDepth(data)) {
      return { problem: 'data_too_deep', node: nodeId };
    }

    const message: ChannelMessage = { channel: channel as string, data, publisher: { client_id: publisher.client_id, sub: publisher.sub }, timestamp };
    return { node: nodeId, message };
  }

  private warnRejected(code: ErrorCode, node: string | undefined): void {
    let warning = this.rejectedWarnings.get(code);
    if (!warning) {
      warning = new ThrottledWarning(this.options.logger);
      this.rejectedWarnings.set(code, warning);
    }
    warning.warn({ event: 'cluster.message_rejected', code, node: node?.slice(0, 64) }, 'dropped a message from Redis that fails the checks of a local publish');
  }
}

function isPublisher(value: unknown): value is { client_id: string; sub: string } {
  if (value === null || typeof value !== 'object') {
    return false;
  }
  const { client_id: clientId, sub } = value as Record<string, unknown>;
  return isPublisherField(clientId) && isPublisherField(sub);
}

function isPublisherField(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= maxPublisherFieldLength;
}
