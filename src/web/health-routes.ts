import type { FastifyInstance } from 'fastify';

import type { ClusterStatus } from '../cluster/cluster.ts';

/** Path of the readiness check for load balancers. */
export const readinessPath = '/readyz';

/** Body of `GET /readyz`. */
export type Readiness =
  | { status: 'ready' }
  | { status: 'degraded'; redis: 'unavailable'; unavailable_since: number; undelivered_messages: number };

/** Builds the readiness body; without Redis a running node is always ready. */
export function readinessOf(cluster: ClusterStatus | null): Readiness {
  if (!cluster || cluster.redis === 'available') {
    return { status: 'ready' };
  }
  return {
    status: 'degraded',
    redis: 'unavailable',
    unavailable_since: cluster.unavailableSince ?? Math.floor(Date.now() / 1000),
    undelivered_messages: cluster.undeliveredMessages,
  };
}

/**
 * Registers `GET /readyz`: 200 `{"status":"ready"}`, or 503 with `"status":"degraded"` while the
 * configured Redis is unavailable. A degraded node still serves its own connections, but its
 * messages reach no other node, and its revocations reach them only through the database poll.
 * `/healthz` stays a liveness check that ignores Redis.
 */
export function registerHealthRoutes(app: FastifyInstance, clusterStatus: (() => ClusterStatus) | null): void {
  app.get(readinessPath, async (_request, reply) => {
    const readiness = readinessOf(clusterStatus?.() ?? null);
    return reply.code(readiness.status === 'ready' ? 200 : 503).header('cache-control', 'no-store').send(readiness);
  });
}
