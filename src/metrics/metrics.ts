import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from 'pino';

import { PortcullisError } from '../errors.ts';
import { eventTapOf } from '../log/event-tap.ts';
import { countLoggedEvents } from './event-counters.ts';
import { registerTrafficCounters, TrafficTotals } from './traffic.ts';

/** Buckets of the token verification time in seconds, from 0.1 ms to 1 s. */
const verificationBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** Sources in the server that the metrics of one server read. */
export interface MetricsInit {
  /** The server's logger; its event tap feeds the event counters. */
  logger: Logger;
  /** Live connections of this process by kind. */
  countConnections: () => { browser: number; device: number };
  /** Database engine of the server, as the `backend` label of `portcullis_database_up`. */
  databaseBackend: 'postgresql' | 'sqlite';
  /** Resolves to true when the database responds to a query, the probe of `/readyz`. */
  databaseReachable: () => Promise<boolean>;
  /** Whether Redis is available now; null when no Redis is configured. */
  redisAvailable: (() => boolean) | null;
}

/** The metrics of one server, in a registry of its own so that servers in one process do not clash. */
export interface ServerMetrics {
  registry: Registry;
  /** Totals the gateway adds to for every frame it receives and sends. */
  traffic: TrafficTotals;
  /** Wraps a token verifier so that each call is timed into `portcullis_token_verification_duration_seconds`. */
  timeTokenVerification<T>(verify: (token: string) => Promise<T>): (token: string) => Promise<T>;
  /** Stops counting logged events. */
  stop(): void;
}

function registerHealthGauges(registry: Registry, init: MetricsInit): void {
  new Gauge({
    name: 'portcullis_connections',
    help: 'Live WebSocket connections on this node by kind (browser, device).',
    labelNames: ['kind'],
    registers: [registry],
    collect(this: Gauge) {
      const counts = init.countConnections();
      this.set({ kind: 'browser' }, counts.browser);
      this.set({ kind: 'device' }, counts.device);
    },
  });

  new Gauge({
    name: 'portcullis_database_up',
    help: '1 when the database responds to a query within 2 s, else 0; the same probe as /readyz.',
    labelNames: ['backend'],
    registers: [registry],
    async collect(this: Gauge) {
      const reachable = await init.databaseReachable().catch(() => false);
      this.set({ backend: init.databaseBackend }, reachable ? 1 : 0);
    },
  });

  const { redisAvailable } = init;
  if (redisAvailable) {
    new Gauge({
      name: 'portcullis_redis_up',
      help: '1 while the Redis link is available, else 0; present only with --redis-url.',
      registers: [registry],
      collect(this: Gauge) {
        this.set(redisAvailable() ? 1 : 0);
      },
    });
  }
}

function verificationOutcome(error: unknown): string {
  return error instanceof PortcullisError ? error.code : 'error';
}

/**
 * Creates the Prometheus metrics of one server: process metrics from prom-client, counters fed by
 * the logger's event tap, traffic counters, gauges and the token verification histogram.
 */
export function createServerMetrics(init: MetricsInit): ServerMetrics {
  const registry = new Registry();
  // NOTE: prom-client starts an event-loop delay monitor and a GC observer per registry and offers
  // no way to stop them, so each server started in one process keeps a pair.
  collectDefaultMetrics({ register: registry });
  registerHealthGauges(registry, init);

  const traffic = new TrafficTotals();
  registerTrafficCounters(registry, traffic);
  const stopCounting = countLoggedEvents(registry, eventTapOf(init.logger));

  const verification = new Histogram({
    name: 'portcullis_token_verification_duration_seconds',
    help: 'Time to verify an access token (signature, claims, key lookup), by outcome: valid or the error code.',
    labelNames: ['outcome'],
    buckets: verificationBuckets,
    registers: [registry],
  });

  return {
    registry,
    traffic,
    timeTokenVerification(verify) {
      return async (token) => {
        const started = performance.now();
        try {
          const verified = await verify(token);
          verification.observe({ outcome: 'valid' }, (performance.now() - started) / 1000);
          return verified;
        } catch (error) {
          verification.observe({ outcome: verificationOutcome(error) }, (performance.now() - started) / 1000);
          throw error;
        }
      };
    },
    stop: stopCounting,
  };
}
