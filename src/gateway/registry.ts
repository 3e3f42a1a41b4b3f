import type { Logger } from 'pino';

import { closeCodes } from '../errors.ts';
import type { Connection } from './connection.ts';
import { ExpirySchedule } from './expiry-schedule.ts';
import type { VerifiedToken } from './token-verifier.ts';

/** Settings of the connection registry. */
export interface RegistryOptions {
  logger: Logger;
  /** Seconds before `exp` at which a connection is sent an `expiring` frame. Default 30. */
  expiryWarningSeconds: number;
  /** Interval of the expiry tick in milliseconds. Default 250. */
  tickMs?: number;
  /** Clock in epoch milliseconds, for tests. */
  now?: () => number;
}

/** One row of `portcullis sessions list`. */
export interface ConnectionSummary {
  id: string;
  kind: 'browser' | 'device';
  sub: string;
  client_id: string;
  grant_id: string | null;
  /** Token id and issuer, so an operator can revoke a token that belongs to no grant. */
  jti: string;
  iss: string;
  origin: string | null;
  ip: string;
  connected_at: number;
  expires_at: number;
}

/** The owner an open connection counts against: a device's client id, or a browser user's subject. */
export type ConnectionOwner = { kind: 'device'; clientId: string } | { kind: 'browser'; sub: string };

/** A connection slot taken by `reserveSlot`. Its `release` frees it and may be called more than once. */
export interface ConnectionSlot {
  release(): void;
}

function ownerKey(owner: ConnectionOwner): string {
  return owner.kind === 'device' ? `device:${owner.clientId}` : `browser:${owner.sub}`;
}

function addToIndex(index: Map<string, Set<Connection>>, key: string | null, connection: Connection): void {
  if (!key) {
    return;
  }
  let set = index.get(key);
  if (!set) {
    set = new Set();
    index.set(key, set);
  }
  set.add(connection);
}

function removeFromIndex(index: Map<string, Set<Connection>>, key: string | null, connection: Connection): void {
  if (!key) {
    return;
  }
  const set = index.get(key);
  set?.delete(connection);
  if (set?.size === 0) {
    index.delete(key);
  }
}

/**
 * Tracks every live connection, warns it before its token expires and closes it at `exp` with 4401,
 * and closes the connections of a revoked grant, client, user or token with 4403. One interval timer
 * and two second-bucketed schedules serve all connections.
 */
export class ConnectionRegistry {
  private readonly connections = new Map<string, Connection>();
  private readonly byGrant = new Map<string, Set<Connection>>();
  private readonly byClient = new Map<string, Set<Connection>>();
  private readonly bySubject = new Map<string, Set<Connection>>();
  private readonly byTokenId = new Map<string, Set<Connection>>();
  private readonly slotCounts = new Map<string, number>();
  private readonly warnings: ExpirySchedule<Connection>;
  private readonly expiries: ExpirySchedule<Connection>;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: RegistryOptions) {
    this.now = options.now ?? Date.now;
    const nowSeconds = Math.floor(this.now() / 1000);
    this.warnings = new ExpirySchedule(nowSeconds);
    this.expiries = new ExpirySchedule(nowSeconds);
  }

  /** Number of live connections. */
  get size(): number {
    return this.connections.size;
  }

  /** Starts the expiry tick; the timer does not keep the process alive. */
  start(): void {
    if (this.timer) {
      return;
    }
    this.timer = setInterval(() => this.tick(), this.options.tickMs ?? 250);
    this.timer.unref();
  }

  /** Stops the expiry tick. */
  stop(): void {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Registers an accepted connection and schedules its expiry. */
  add(connection: Connection): void {
    this.connections.set(connection.id, connection);
    this.index(connection);
    this.scheduleExpiry(connection);
  }

  /** Forgets a closed connection. */
  remove(connection: Connection): void {
    if (!this.connections.delete(connection.id)) {
      return;
    }
    this.unindex(connection);
    this.warnings.cancel(connection);
    this.expiries.cancel(connection);
  }

  /** Looks up a live connection by id. */
  get(id: string): Connection | undefined {
    return this.connections.get(id);
  }

  /** Replaces a connection's token after a refresh and moves its expiry to the new `exp`. */
  replaceToken(connection: Connection, token: VerifiedToken): void {
    if (!this.connections.has(connection.id)) {
      return;
    }
    this.unindex(connection);
    connection.token = token;
    this.index(connection);
    this.scheduleExpiry(connection);
  }

  /** Returns the live connections of a grant, e.g. to extend them after a browser refresh. */
  connectionsOfGrant(grantId: string): Connection[] {
    return [...this.byGrant.get(grantId) ?? []];
  }

  /** Closes every connection of a grant with 4403; returns how many were closed. */
  closeGrant(grantId: string, reason: string): number {
    return this.closeAll(this.byGrant.get(grantId), reason);
  }

  /** Closes every connection whose token was issued to a client; returns how many. */
  closeClient(clientId: string, reason: string): number {
    return this.closeAll(this.byClient.get(clientId), reason);
  }

  /** Tells every browser connection that a device is gone, so its owner stops watching it. */
  withdrawDevice(clientId: string): void {
    for (const connection of this.connections.values()) {
      if (connection.kind === 'browser') {
        connection.withdrawDevice?.(clientId);
      }
    }
  }

  /** Closes every connection acting for a user, i.e. with a grant and this subject; returns how many. */
  closeSubject(sub: string, reason: string): number {
    // Client-credentials tokens carry the client id as `sub` and belong to no user.
    const delegated = [...this.bySubject.get(sub) ?? []].filter((connection) => connection.token.grantId !== null);
    return this.closeAll(new Set(delegated), reason);
  }

  /** Closes every connection holding the token with this `jti`; returns how many. */
  closeTokenId(jti: string, reason: string): number {
    return this.closeAll(this.byTokenId.get(jti), reason);
  }

  /** Counts the live connections by kind, for the metrics scrape. */
  countByKind(): { browser: number; device: number } {
    const counts = { browser: 0, device: 0 };
    for (const connection of this.connections.values()) {
      counts[connection.kind] += 1;
    }
    return counts;
  }

  /** Lists live connections for operators. */
  summaries(): ConnectionSummary[] {
    return [...this.connections.values()].map((connection) => ({
      id: connection.id,
      kind: connection.kind,
      sub: connection.token.sub,
      client_id: connection.token.clientId,
      grant_id: connection.token.grantId,
      jti: connection.token.jti,
      iss: String(connection.token.payload.iss),
      origin: connection.origin,
      ip: connection.peerAddress,
      connected_at: Math.floor(connection.connectedAt / 1000),
      expires_at: connection.token.exp,
    }));
  }

  /** Returns the number of connection slots an owner has taken, one per accepted socket not yet closed. */
  slotCount(owner: ConnectionOwner): number {
    return this.slotCounts.get(ownerKey(owner)) ?? 0;
  }

  /**
   * Takes one of `limit` connection slots for an owner, or returns null when all are taken. It is
   * synchronous, so two handshakes that finish their checks together cannot both take the last slot.
   * The caller releases the slot when the socket closes. Slots are counted apart from `add` and
   * `remove`, because a connection removed at revocation or expiry keeps its socket open until the
   * close completes.
   */
  reserveSlot(owner: ConnectionOwner, limit: number): ConnectionSlot | null {
    const key = ownerKey(owner);
    const slotsTaken = this.slotCounts.get(key) ?? 0;
    if (slotsTaken >= limit) {
      return null;
    }
    this.slotCounts.set(key, slotsTaken + 1);
    return new RegistrySlot(this.slotCounts, key);
  }

  /** Sends due `expiring` frames and closes connections whose token has expired. */
  tick(): void {
    const nowSeconds = Math.floor(this.now() / 1000);

    for (const connection of this.warnings.takeDue(nowSeconds)) {
      connection.socket.send(JSON.stringify({ type: 'expiring', expires_at: connection.token.exp }));
    }

    for (const connection of this.expiries.takeDue(nowSeconds)) {
      this.options.logger.info({ event: 'connection.expired', connection_id: connection.id, sub: connection.token.sub, client_id: connection.token.clientId }, 'connection closed at token expiry');
      this.remove(connection);
      connection.socket.close(closeCodes.unauthorized, 'token_expired');
    }
  }

  private scheduleExpiry(connection: Connection): void {
    this.warnings.schedule(connection, connection.token.exp - this.options.expiryWarningSeconds);
    this.expiries.schedule(connection, connection.token.exp);
  }

  private index(connection: Connection): void {
    addToIndex(this.byGrant, connection.token.grantId, connection);
    addToIndex(this.byClient, connection.token.clientId, connection);
    addToIndex(this.bySubject, connection.token.sub, connection);
    addToIndex(this.byTokenId, connection.token.jti, connection);
  }

  private unindex(connection: Connection): void {
    removeFromIndex(this.byGrant, connection.token.grantId, connection);
    removeFromIndex(this.byClient, connection.token.clientId, connection);
    removeFromIndex(this.bySubject, connection.token.sub, connection);
    removeFromIndex(this.byTokenId, connection.token.jti, connection);
  }

  private closeAll(connections: Set<Connection> | undefined, reason: string): number {
    const targets = [...connections ?? []];
    for (const connection of targets) {
      this.options.logger.info({ event: 'connection.revoked', connection_id: connection.id, sub: connection.token.sub, client_id: connection.token.clientId, reason }, 'connection closed by revocation');
      this.remove(connection);
      connection.socket.close(closeCodes.forbidden, 'token_revoked');
    }
    return targets.length;
  }
}

/** A slot counted in the registry's `slotCounts` under its owner's key, until released once. */
class RegistrySlot implements ConnectionSlot {
  private released = false;

  constructor(private readonly slotCounts: Map<string, number>, private readonly key: string) {}

  release(): void {
    if (this.released) {
      return;
    }
    this.released = true;
    const remaining = (this.slotCounts.get(this.key) ?? 1) - 1;
    if (remaining > 0) {
      this.slotCounts.set(this.key, remaining);
    } else {
      this.slotCounts.delete(this.key);
    }
  }
}
