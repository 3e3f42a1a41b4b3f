import type { Duplex } from 'node:stream';

import type { Logger } from 'pino';
import { WebSocket, type RawData } from 'ws';

import { BroadcastFrame } from '../channels/broadcast-frame.ts';
import type { ChannelBroker, ChannelMessage } from '../channels/broker.ts';
import { MessageRateLimiter } from '../channels/message-rate.ts';
import { parseChannelName } from '../channels/names.ts';
import { mayPublish, mayReceive, permissionsFromScope, type ChannelPermissions } from '../channels/permissions.ts';
import { errorFrame, parseClientFrame, replyFrame, type ClientFrame, type MessageId } from '../channels/protocol.ts';
import { SubscriptionSet } from '../channels/subscriptions.ts';
import { closeCodes, type ErrorCode } from '../errors.ts';
import type { TrafficTotals } from '../metrics/traffic.ts';
import { gatewayClientId } from '../auth/provider.ts';
import type { DpopVerifier } from './dpop/verifier.ts';
import { checkReplacementToken } from './in-band-auth.ts';
import type { ConnectionRegistry } from './registry.ts';
import { bytesQueuedThisIteration, writeBatched } from './write-batch.ts';
import type { VerifiedToken } from './token-verifier.ts';

/** One accepted WebSocket connection and the identity behind it. */
export interface Connection {
  id: string;
  kind: 'browser' | 'device';
  socket: WebSocket;
  /**
   * The TCP or TLS socket under `socket`, set only when no extension was negotiated. Broadcast
   * frames are then written to it directly.
   */
  transport?: Duplex;
  /** The current token; an in-band refresh replaces it. */
  token: VerifiedToken;
  /** The browser's Origin or the device's client id. */
  origin: string | null;
  peerAddress: string;
  /** Epoch milliseconds. */
  connectedAt: number;
  /**
   * Replaces the token after a refresh that was already verified, narrows the subscriptions to the
   * new scopes and sends `auth_ok`. Set once the connection is served.
   */
  applyToken?: (token: VerifiedToken) => void;
  /**
   * Drops the owned-device scope `subscribe:devices/<clientId>/#` and the subscriptions that relied
   * on it, after the device was removed. Set once the connection is served.
   */
  withdrawDevice?: (clientId: string) => void;
}

/** Services a connection uses besides its socket. */
export interface ConnectionServices {
  logger: Logger;
  /** Outgoing bytes a socket may have queued before it is closed with 1013. */
  maxBufferedBytes: number;
  /** Subscriptions one connection may hold. */
  maxSubscriptions: number;
  /** Messages per second one connection may send. */
  messageRatePerSecond: number;
  broker: ChannelBroker;
  registry: ConnectionRegistry;
  verifyToken: (token: string) => Promise<VerifiedToken>;
  /** Checks a token for revocation and returns it as a connection of `kind` may use it, or the refusal. */
  admitToken: (kind: 'browser' | 'device', token: VerifiedToken) => Promise<ErrorCode | VerifiedToken>;
  /** Verifies the proof that comes with a DPoP-bound token sent in band. */
  dpop: DpopVerifier;
  /** Called for every message a client publishes, after local delivery (the webhook). */
  onClientPublish?: (message: ChannelMessage) => void;
  /** Totals of received and sent frames and bytes for the metrics; none when metrics are off. */
  traffic?: TrafficTotals;
}

/** Channel state of one connection, alive from the welcome frame to the close. */
interface ConnectionState {
  connection: Connection;
  services: ConnectionServices;
  permissions: ChannelPermissions;
  subscriptions: SubscriptionSet;
  rate: MessageRateLimiter;
  closed: boolean;
}

// Connections that present the same verified token object, which the token and verdict caches
// share, share its parsed permissions. Nothing changes them in place.
const permissionsByToken = new WeakMap<VerifiedToken, ChannelPermissions>();

function permissionsOf(token: VerifiedToken): ChannelPermissions {
  let permissions = permissionsByToken.get(token);
  if (!permissions) {
    // Only a browser session of the built-in auth server, which adds `admin/` scopes for admins only, may use them.
    const adminSession = token.clientId === gatewayClientId && token.grantId !== null;
    permissions = permissionsFromScope(token.scope, { clientId: token.clientId, sub: token.sub, adminSession });
    permissionsByToken.set(token, permissions);
  }
  return permissions;
}

function deliverPermitted(state: ConnectionState, frame: BroadcastFrame, message: ChannelMessage): void {
  if (mayReceive(state.permissions, message.channel)) {
    send(state, frame);
  }
}

/**
 * Registers the connection, sends the welcome frame and serves the `portcullis.v1` channel
 * protocol until the socket closes.
 */
export function serveConnection(connection: Connection, services: ConnectionServices): void {
  const { socket, token } = connection;
  const state: ConnectionState = {
    connection,
    services,
    permissions: permissionsOf(token),
    subscriptions: null as unknown as SubscriptionSet,
    rate: new MessageRateLimiter(services.messageRatePerSecond),
    closed: false,
  };
  state.subscriptions = new SubscriptionSet(services.broker, { deliver: (frame, message) => deliverPermitted(state, frame, message) }, services.maxSubscriptions);

  connection.applyToken = (fresh) => applyToken(state, fresh, null);
  connection.withdrawDevice = (clientId) => withdrawDevice(state, clientId);
  services.registry.add(connection);
  send(state, JSON.stringify({
    type: 'welcome',
    connection_id: connection.id,
    sub: token.sub,
    client_id: token.clientId,
    expires_at: token.exp,
    scope: token.scope,
  }));

  socket.on('message', (data, isBinary) => {
    // An exception here would escape into ws's event emitter and end the process, so one bad frame
    // can at worst end its own connection.
    try {
      receive(state, data, isBinary);
    } catch (error) {
      services.logger.error({ event: 'connection.frame_failed', connection_id: connection.id, err: error }, 'handling a frame failed with an internal error');
      close(state, closeCodes.internalError, 'server_error');
    }
  });

  socket.on('error', (error) => {
    services.logger.debug({ event: 'connection.error', connection_id: connection.id, err: error }, 'connection error');
  });

  socket.on('close', (code) => {
    state.closed = true;
    state.subscriptions.clear();
    services.registry.remove(connection);
    services.logger.info({ event: 'connection.closed', connection_id: connection.id, close_code: code }, 'connection closed');
  });
}

function receive(state: ConnectionState, data: RawData, isBinary: boolean): void {
  const { connection, services } = state;
  if (services.traffic) {
    services.traffic.messagesReceived += 1;
    services.traffic.bytesReceived += rawDataBytes(data);
  }
  // Once a close has started (here, or by the registry for expiry or revocation), a peer that
  // ignores the close frame must not go on publishing or subscribing until `ws` times it out.
  if (state.closed || connection.socket.readyState !== WebSocket.OPEN) {
    return;
  }

  const decision = state.rate.take();
  if (decision === 'abuse') {
    services.logger.warn({ event: 'connection.rate_abuse', connection_id: connection.id, client_id: connection.token.clientId }, 'closing a connection that keeps sending past its message rate');
    close(state, closeCodes.policyViolation, 'rate_limited');
    return;
  }
  if (decision === 'refuse') {
    // A refused frame is still parsed for its id, so the client can tell which request failed.
    // The abuse threshold bounds how many such frames are parsed.
    send(state, errorFrame(isBinary ? null : parseClientFrame(data).id, 'rate_limited'));
    return;
  }

  if (isBinary) {
    send(state, errorFrame(null, 'binary_not_supported'));
    return;
  }
  const frame = parseClientFrame(data);
  if ('problem' in frame) {
    send(state, errorFrame(frame.id, frame.problem));
    return;
  }
  handleFrame(state, frame);
}

function handleFrame(state: ConnectionState, frame: ClientFrame): void {
  switch (frame.type) {
    case 'subscribe':
      answer(state, frame.id, state.subscriptions.add(frame.channel, state.permissions), 'subscribed', frame.channel);
      return;
    case 'unsubscribe':
      answer(state, frame.id, state.subscriptions.remove(frame.channel), 'unsubscribed', frame.channel);
      return;
    case 'publish':
      answer(state, frame.id, publish(state, frame.channel, frame.data), 'published', frame.channel);
      return;
    case 'auth':
      reauthenticate(state, frame.id, frame.token, frame.dpop).catch((error: unknown) => {
        state.services.logger.error({ event: 'connection.auth_failed', connection_id: state.connection.id, err: error }, 'in-band authentication failed with an internal error');
        close(state, closeCodes.internalError, 'server_error');
      });
  }
}

function answer(state: ConnectionState, id: MessageId, rejection: ErrorCode | null, reply: 'subscribed' | 'unsubscribed' | 'published', channel: string): void {
  send(state, rejection ? errorFrame(id, rejection) : replyFrame(reply, id, channel));
}

function publish(state: ConnectionState, channel: string, data: unknown): ErrorCode | null {
  const segments = parseChannelName(channel);
  if (!segments) {
    return 'invalid_channel';
  }
  if (!mayPublish(state.permissions, segments)) {
    return 'forbidden';
  }

  const { token } = state.connection;
  const message: ChannelMessage = { channel, data, publisher: { client_id: token.clientId, sub: token.sub }, timestamp: Date.now() };
  state.services.broker.publish(message);
  state.services.onClientPublish?.(message);
  return null;
}

/**
 * Replaces the connection's token with one sent in band. A refused token closes the connection with
 * 4403 and the error code as reason. An accepted one may carry fewer scopes, so subscriptions it no
 * longer allows end with an `unsubscribed` frame whose reason is `forbidden`.
 */
async function reauthenticate(state: ConnectionState, id: MessageId | null, presented: string, proof: string | null): Promise<void> {
  const { connection, services } = state;
  const outcome = await checkReplacementToken(connection, { token: presented, proof }, services);
  if (state.closed) {
    return;
  }
  if (typeof outcome === 'string') {
    services.logger.info({ event: 'connection.auth_rejected', connection_id: connection.id, code: outcome }, 'in-band token rejected');
    close(state, closeCodes.forbidden, outcome);
    return;
  }

  applyToken(state, outcome, id);
}

/** Switches the connection to a verified token, drops subscriptions it no longer allows and confirms with `auth_ok`. */
function applyToken(state: ConnectionState, token: VerifiedToken, id: MessageId | null): void {
  const { connection, services } = state;
  if (state.closed) {
    return;
  }

  services.registry.replaceToken(connection, token);
  state.permissions = permissionsOf(token);
  const dropped = state.subscriptions.restrictTo(state.permissions);
  services.logger.info({ event: 'connection.refreshed', connection_id: connection.id, expires_at: token.exp, dropped_subscriptions: dropped.length }, 'connection token refreshed');

  const reply: Record<string, unknown> = { type: 'auth_ok', expires_at: token.exp, scope: token.scope };
  if (id !== null) {
    reply.id = id;
  }
  send(state, JSON.stringify(reply));
  for (const channel of dropped) {
    send(state, JSON.stringify({ type: 'unsubscribed', id: null, channel, reason: 'forbidden' }));
  }
}

function withdrawDevice(state: ConnectionState, clientId: string): void {
  const lost = ['devices', clientId, '#'];
  const subscribe = state.permissions.subscribe.filter((pattern) => pattern.join('/') !== lost.join('/'));
  if (state.closed || subscribe.length === state.permissions.subscribe.length) {
    return;
  }

  state.permissions = { ...state.permissions, subscribe };
  for (const channel of state.subscriptions.restrictTo(state.permissions)) {
    send(state, JSON.stringify({ type: 'unsubscribed', id: null, channel, reason: 'forbidden' }));
  }
}

/**
 * Queues a frame unless the peer has stopped reading. A client that never reads would otherwise
 * make the server hold every message for it in memory, so past the limit it is closed with 1013.
 * Other connections are unaffected: each socket has its own queue.
 */
function send(state: ConnectionState, frame: string | BroadcastFrame): void {
  const { connection, services } = state;
  if (state.closed || connection.socket.readyState !== WebSocket.OPEN) {
    return;
  }
  // Frames queued in this iteration have not been offered to the peer yet, so only older ones count.
  const backlog = connection.socket.bufferedAmount - (connection.transport ? bytesQueuedThisIteration(connection.transport) : 0);
  if (backlog > services.maxBufferedBytes) {
    services.logger.warn({ event: 'connection.slow_consumer', connection_id: connection.id, buffered_bytes: backlog }, 'closing a connection that does not read its messages');
    close(state, closeCodes.tryAgainLater, 'slow_consumer');
    // A peer that does not read will not complete the closing handshake either.
    setTimeout(() => connection.socket.terminate(), 1000).unref();
    return;
  }

  if (services.traffic) {
    services.traffic.messagesSent += 1;
    services.traffic.bytesSent += typeof frame === 'string' ? Buffer.byteLength(frame) : frame.payload.length;
  }

  if (typeof frame === 'string') {
    connection.socket.send(frame);
    return;
  }
  // Without an extension, and as Portcullis never sends a Blob, ws writes every frame to the socket
  // synchronously and in order. A frame framed once for all subscribers can then go to the socket
  // as it is. permessage-deflate may queue frames inside ws, and then ws frames this one too.
  if (connection.transport) {
    writeBatched(connection.transport, frame.wire);
    return;
  }
  // ws sends a Buffer as a binary frame by default, but message frames are JSON text.
  connection.socket.send(frame.payload, { binary: false });
}

// ws hands text frames over as one Buffer unless binaryType is changed, which Portcullis does not do.
function rawDataBytes(data: RawData): number {
  if (Array.isArray(data)) {
    return data.reduce((total, part) => total + part.length, 0);
  }
  return data.byteLength;
}

/** Stops delivery at once and starts the closing handshake. */
function close(state: ConnectionState, code: number, reason: string): void {
  state.closed = true;
  state.subscriptions.clear();
  state.services.registry.remove(state.connection);
  state.connection.socket.close(code, reason);
}
