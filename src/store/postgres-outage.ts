import type { PostgresPool, PostgresPoolClient } from 'kysely';
import type pg from 'pg';

import { PortcullisError } from '../errors.ts';

/** Hooks that report when PostgreSQL stops and resumes responding to queries. */
export interface PostgresOutageEvents {
  /** Called with the first connection failure after a query succeeded, or after start. */
  onUnavailable(error: Error): void;
  /** Called when a query succeeds after `onUnavailable`, with the milliseconds since that call. */
  onRestored(unavailableMs: number): void;
}

// Node's socket and DNS errors for a server that cannot be reached or dropped the connection.
const networkErrorCodes = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT',
  'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN', 'ENOTFOUND',
]);

// SQLSTATE codes of a server that is shutting down, starting up or full: admin_shutdown,
// crash_shutdown, cannot_connect_now and too_many_connections. Class 08 (connection exception)
// is matched by its prefix.
const serverUnavailableStates = new Set(['57P01', '57P02', '57P03', '53300']);

// pg 8 and pg-pool 3 raise these without a code when a connection ends or a connect times out.
const droppedConnectionMessages = new Set([
  'Connection terminated unexpectedly',
  'Connection terminated due to connection timeout',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error and is not queryable',
]);

/**
 * Tells whether an error from pg means that the server cannot be reached at the moment, as opposed
 * to a failed statement. It also looks into `AggregateError` (one attempt per address of a host
 * name) and into `cause`.
 */
export function isConnectionFailure(error: unknown): boolean {
  return matchesConnectionFailure(error, 0);
}

function matchesConnectionFailure(error: unknown, depth: number): boolean {
  // pg-pool nests one cause at most, so the bound only stops a cycle of causes.
  if (!(error instanceof Error) || depth > 3) {
    return false;
  }

  const code = (error as Error & { code?: unknown }).code;
  if (typeof code === 'string' && (networkErrorCodes.has(code) || serverUnavailableStates.has(code) || /^08[0-9A-Z]{3}$/.test(code))) {
    return true;
  }
  if (droppedConnectionMessages.has(error.message)) {
    return true;
  }
  if (error instanceof AggregateError && error.errors.some((inner) => matchesConnectionFailure(inner, depth + 1))) {
    return true;
  }
  return matchesConnectionFailure(error.cause, depth + 1);
}

/**
 * Wraps a pg pool for kysely so that a connection failure rejects with
 * `PortcullisError('temporarily_unavailable')`, the original error as its `cause`, so callers across
 * the server respond with 503 instead of 500. Other errors pass unchanged. `events` receives each
 * change between reachable and unreachable once.
 */
export function detectOutages(pool: pg.Pool, events: PostgresOutageEvents): PostgresPool {
  let unavailableSince: number | null = null;

  const fail = (error: unknown): never => {
    if (!isConnectionFailure(error)) {
      throw error;
    }
    if (unavailableSince === null) {
      unavailableSince = Date.now();
      events.onUnavailable(error as Error);
    }
    throw new PortcullisError('temporarily_unavailable', { cause: error });
  };

  const succeed = <T>(result: T): T => {
    if (unavailableSince !== null) {
      const unavailableMs = Date.now() - unavailableSince;
      unavailableSince = null;
      events.onRestored(unavailableMs);
    }
    return result;
  };

  // kysely keys its connection state by client object, so each pg client keeps one wrapper.
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    let wrapper = wrappers.get(client);
    if (!wrapper) {
      wrapper = {
        query: ((statement: any, parameters?: readonly unknown[]) => {
          // kysely passes a cursor only for streamed queries, which Portcullis does not run.
          if (typeof statement !== 'string') {
            return client.query(statement);
          }
          return client.query(statement, parameters as unknown[]).then(succeed, fail);
        }) as PostgresPoolClient['query'],
        // pg-pool sets a new `release` on each checkout, so it is looked up at each call.
        release: (destroy?: boolean) => client.release(destroy),
      };
      wrappers.set(client, wrapper);
    }
    return wrapper;
  };

  return {
    connect: () => pool.connect().then(wrap, fail),
    end: () => pool.end(),
  };
}
