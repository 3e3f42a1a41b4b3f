import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';

import type { Options } from '../config/options.ts';
import { closeCodes, unavailableRetryAfterSeconds, type ErrorCode } from '../errors.ts';
import { pathWithoutQuery } from '../log/logger.ts';
import { hasTooManyHeaderLines } from '../web/header-lines.ts';
import { serveConnection, type Connection, type ConnectionServices } from './connection.ts';
import { confirmHandshakeChecks, runHandshakeChecks } from './guard/index.ts';
import { createHandshakeLimits, type RateLimiterFactory } from './handshake-limits.ts';
import { Heartbeat } from './heartbeat.ts';
import { rejectUpgrade } from './reject.ts';
import type { ConnectionOwner, ConnectionSlot } from './registry.ts';
import type { VerifiedToken } from './token-verifier.ts';
import { applicationProtocol, headerValues, parseOfferedProtocols, type HandshakeCheck, type HandshakeState } from './handshake.ts';

/** Path of the WebSocket endpoint. */
export const websocketPath = '/ws';

/** Options that set the gateway's connection and handshake limits, compression and heartbeat. */
export type UpgradeLimitOptions = Pick<Options,
  | 'perMessageDeflate'
  | 'heartbeatIntervalMs'
  | 'maxConnectionsPerClient'
  | 'maxConnectionsPerUser'
  | 'handshakesPerIpPerMinute'
  | 'handshakesPerClientPerMinute'
  | 'maxPendingHandshakes'
  | 'trustedProxies'>;

/** Inputs of the upgrade handler. */
export interface UpgradeHandlerInit {
  checks: HandshakeCheck[];
  logger: Logger;
  maxPayloadBytes: number;
  /** Limit options. The server passes its whole `Options`. */
  limits: UpgradeLimitOptions;
  /** Factory of the handshake rate limiters, in-memory ones by default. */
  createRateLimiter?: RateLimiterFactory;
  /**
   * Takes one of `limit` connection slots of an owner, or resolves to null when all are taken.
   * Defaults to the registry's count of this process; with Redis, the cluster's count.
   */
  reserveSlot?: (owner: ConnectionOwner, limit: number) => Promise<ConnectionSlot | null>;
  /**
   * Key by which the per-client handshake rate and connection cap count a bearer token; by default
   * its client id. An external issuer's app may act for many users, so there it is client and subject.
   */
  deviceLimitKey?: (token: VerifiedToken) => string;
  /** Services accepted connections use: registry, token verification and revocation lookups. */
  services: ConnectionServices;
}

/** Rounds of confirmation before a handshake gives up with `temporarily_unavailable`. */
const maxConfirmRounds = 5;

/** The arguments of one `upgrade` event. */
interface UpgradeRequest {
  request: IncomingMessage;
  socket: Duplex;
  head: Buffer;
}

/** A handshake rejection, with the seconds after which a retry may succeed when that is known. */
interface Rejection {
  code: ErrorCode;
  retryAfterSeconds?: number;
  /** The failed part of a check, from a fixed set. It is logged, never sent. */
  detail?: string;
}

/**
 * Creates the `upgrade` listener of the HTTPS server. Every check and limit runs before
 * `handleUpgrade`, so a rejected client never gets a WebSocket. It gets an HTTP status and a JSON
 * error instead. Call `stop` when the server closes, to stop the heartbeat timer.
 */
export function createUpgradeHandler(init: UpgradeHandlerInit) {
  const { limits: limitOptions, services } = init;
  const limits = createHandshakeLimits(limitOptions, init.createRateLimiter);
  const deviceLimitKey = init.deviceLimitKey ?? ((token: VerifiedToken) => token.clientId);
  const heartbeat = new Heartbeat({ intervalMs: limitOptions.heartbeatIntervalMs, logger: init.logger });
  heartbeat.start();

  const websocketServer = new WebSocketServer({
    noServer: true,
    // With permessage-deflate on, ws applies maxPayload to the inflated message, so a small
    // compressed frame cannot expand past the limit.
    maxPayload: init.maxPayloadBytes,
    perMessageDeflate: limitOptions.perMessageDeflate,
    handleProtocols: (protocols) => (protocols.has(applicationProtocol) ? applicationProtocol : false),
  });
  // ws checks the upgrade again and by default rejects with a plain-text 400 what the guard let
  // through: a subprotocol offered twice, or a key, version or subprotocol next to a no-break space,
  // which the guard's `trim` removes and ws keeps. With this listener the client gets the JSON error.
  websocketServer.on('wsClientError', (_error, socket, request) => reject(request, socket, { code: 'bad_handshake' }));
  // performance.now() at the `upgrade` event, for `duration_ms` on the accepted or rejected line.
  const startTimes = new WeakMap<IncomingMessage, number>();
  const elapsedMs = (request: IncomingMessage) => {
    const started = startTimes.get(request);
    return started === undefined ? undefined : performance.now() - started;
  };

  async function handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', (error) => init.logger.debug({ event: 'handshake.socket_error', err: error }, 'socket error during handshake'));

    // Before the address limit, which may read an X-Forwarded-For line that Node dropped.
    if (hasTooManyHeaderLines(request)) {
      reject(request, socket, { code: 'headers_too_large' });
      return;
    }

    if (!limits.pending.tryEnter()) {
      reject(request, socket, { code: 'server_busy', retryAfterSeconds: 1 });
      return;
    }
    try {
      await checkAndUpgrade(request, socket, head);
    } finally {
      limits.pending.leave();
    }
  }

  async function checkAndUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // Counted before any token or database work, so a flood from one address stays cheap.
    const addressDecision = await limits.perAddress.consume(limits.addressKey(request));
    if (!addressDecision.allowed) {
      reject(request, socket, { code: 'rate_limited', retryAfterSeconds: addressDecision.retryAfterSeconds });
      return;
    }

    const state = createState(request);
    if (!state) {
      reject(request, socket, { code: 'bad_handshake' });
      return;
    }
    if (state.url.pathname !== websocketPath) {
      reject(request, socket, { code: 'not_found' });
      return;
    }

    const checkRejection = await runHandshakeChecks(init.checks, state);
    if (checkRejection) {
      reject(request, socket, { code: checkRejection, detail: state.detail });
      return;
    }

    // Counted only after the token and X-Client-Id are verified. Client ids are not secret, so
    // counting unauthenticated attempts would let anyone use up a device's budget and lock it out.
    if (state.kind === 'device') {
      const clientDecision = await limits.perClient.consume(deviceLimitKey(state.verified!));
      if (!clientDecision.allowed) {
        reject(request, socket, { code: 'rate_limited', retryAfterSeconds: clientDecision.retryAfterSeconds });
        return;
      }
    }
    if (socket.destroyed) {
      return;
    }

    // Two handshakes of one owner cannot both take the last slot, because the registry counts
    // synchronously and the cluster's count is one atomic Redis script.
    const reserved = reserveSlot(state);
    const slot = reserved instanceof Promise ? await reserved : reserved;
    if (!slot) {
      reject(request, socket, { code: 'too_many_connections' });
      return;
    }

    try {
      await confirmAndAccept({ request, socket, head }, state, slot);
    } catch (error) {
      slot.release();
      throw error;
    }
  }

  /**
   * Confirms the checks once more after the limits were awaited, then accepts. `accept` runs right
   * after a round of confirmation that did not wait, in the same synchronous step, so that no
   * revocation can be applied between the two: a revocation applied later finds the registered
   * connection and closes it.
   */
  async function confirmAndAccept(upgrade: UpgradeRequest, state: HandshakeState, slot: ConnectionSlot): Promise<void> {
    const { request, socket } = upgrade;
    let confirmation = confirmHandshakeChecks(init.checks, state);
    for (let round = 1; confirmation instanceof Promise; round += 1) {
      const rejection = await confirmation;
      if (rejection) {
        confirmation = rejection;
        break;
      }
      if (socket.destroyed) {
        slot.release();
        return;
      }

      confirmation = confirmHandshakeChecks(init.checks, state);
      if (confirmation instanceof Promise && round === maxConfirmRounds) {
        // Revocations arrived faster than the database could be read for this handshake.
        await confirmation;
        confirmation = 'temporarily_unavailable';
      }
    }

    if (confirmation) {
      slot.release();
      reject(request, socket, { code: confirmation });
      return;
    }
    // The client may have gone while the cluster's count was checked.
    if (socket.destroyed) {
      slot.release();
      return;
    }
    accept(upgrade, state, slot);
  }

  function reserveSlot(state: HandshakeState): ConnectionSlot | null | Promise<ConnectionSlot | null> {
    const verified = state.verified!;
    const owner: ConnectionOwner = state.kind === 'browser' ? { kind: 'browser', sub: verified.sub } : { kind: 'device', clientId: deviceLimitKey(verified) };
    const limit = owner.kind === 'browser' ? limitOptions.maxConnectionsPerUser : limitOptions.maxConnectionsPerClient;
    if (init.reserveSlot) {
      return init.reserveSlot(owner, limit);
    }
    return services.registry.reserveSlot(owner, limit);
  }

  function accept(upgrade: UpgradeRequest, state: HandshakeState, slot: ConnectionSlot): void {
    const { request, socket, head } = upgrade;
    let upgraded = false;
    // The 101 response and the welcome frame leave in one write instead of two: each TLS write is a
    // record and a system call of its own.
    socket.cork();
    process.nextTick(() => socket.uncork());
    try {
      websocketServer.handleUpgrade(request, socket, head, (websocket) => {
        upgraded = true;
        websocket.once('close', () => slot.release());
        startConnection(request, state, websocket);
      });
    } finally {
      // ws rejects some requests itself without calling back, such as an unacceptable
      // Sec-WebSocket-Extensions offer. Without a verifyClient option, ws 8 calls back synchronously,
      // so `upgraded` is final here.
      if (!upgraded) {
        slot.release();
      }
    }
  }

  function startConnection(request: IncomingMessage, state: HandshakeState, websocket: Connection['socket']): void {
    const connection: Connection = {
      id: crypto.randomUUID(),
      kind: state.kind ?? 'device',
      socket: websocket,
      // Without a negotiated extension, broadcast frames go to the socket directly (see `send`).
      transport: websocket.extensions === '' ? request.socket : undefined,
      token: state.verified!,
      origin: state.kind === 'browser' ? headerValues(request, 'origin')[0] ?? null : state.verified!.clientId,
      peerAddress: state.peerAddress,
      connectedAt: Date.now(),
    };
    init.logger.info({
      event: 'handshake.accepted',
      connection_id: connection.id,
      kind: connection.kind,
      sub: connection.token.sub,
      client_id: connection.token.clientId,
      ip: connection.peerAddress,
      duration_ms: elapsedMs(request),
    }, 'handshake accepted');
    heartbeat.track(connection.id, websocket);
    try {
      serveConnection(connection, services);
    } catch (error) {
      // The socket is a WebSocket now, so an HTTP error response would corrupt its framing.
      init.logger.error({ event: 'connection.setup_failed', connection_id: connection.id, err: error }, 'serving an accepted connection failed');
      websocket.close(closeCodes.internalError, 'server_error');
    }
  }

  function reject(request: IncomingMessage, socket: Duplex, rejection: Rejection): void {
    const { code } = rejection;
    // A store or issuer outage clears up on its own, so the response carries `Retry-After`.
    const retryAfterSeconds = rejection.retryAfterSeconds ?? (code === 'temporarily_unavailable' ? unavailableRetryAfterSeconds : undefined);
    init.logger.info({
      event: 'handshake.rejected',
      code,
      detail: rejection.detail,
      retry_after_seconds: retryAfterSeconds,
      path: pathWithoutQuery(request.url),
      origin: truncate(headerValues(request, 'origin')[0]),
      client_id: truncate(headerValues(request, 'x-client-id')[0]),
      ip: request.socket.remoteAddress,
      duration_ms: elapsedMs(request),
    }, 'handshake rejected');
    rejectUpgrade(socket, code, retryAfterSeconds === undefined ? {} : { 'Retry-After': String(retryAfterSeconds) });
  }

  return {
    websocketServer,
    listener(request: IncomingMessage, socket: Duplex, head: Buffer): void {
      startTimes.set(request, performance.now());
      handleUpgrade(request, socket, head).catch((error: unknown) => {
        init.logger.error({ event: 'handshake.failed', err: error }, 'handshake failed with an internal error');
        rejectUpgrade(socket, 'server_error');
      });
    },
    /** Stops the heartbeat timer. Open sockets stay open. */
    stop(): void {
      heartbeat.stop();
    },
  };
}

function createState(request: IncomingMessage): HandshakeState | null {
  let url: URL;
  try {
    url = new URL(request.url ?? '', 'https://gateway.invalid');
  } catch {
    return null;
  }

  return {
    request,
    url,
    peerAddress: request.socket.remoteAddress ?? '',
    kind: null,
    token: null,
    scheme: null,
    offeredProtocols: parseOfferedProtocols(request),
    verified: null,
  };
}

// Header values are attacker-controlled; only a bounded prefix reaches the log.
function truncate(value: string | undefined): string | undefined {
  return value === undefined ? undefined : value.slice(0, 200);
}
