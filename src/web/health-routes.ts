import type { FastifyInstance } from 'fastify';

import type { ClusterStatus } from '../cluster/cluster.ts';
import type { WebContext } from './context.ts';

/** Path of the readiness check for load balancers. */
export const readinessPath = '/readyz';

/** Redis part of a degraded readiness body. */
interface RedisOutage {
  redis: 'unavailable';
  unavailable_since: number;
  undelivered_messages: number;
}

/** Body of `GET /readyz`; `unavailable` names every dependency that failed its check. */
export type Readiness =
  | { status: 'ready' }
  | ({ status: 'degraded'; unavailable: string[] } & Partial<RedisOutage>);

/** Builds the readiness body from the Redis link's state and the names of failed probes. */
export function readinessOf(cluster: ClusterStatus | null, failedProbes: string[] = []): Readiness {
  const redisDown = cluster !== null && cluster.redis !== 'available';
  if (!redisDown && failedProbes.length === 0) {
    return { status: 'ready' };
  }
  if (!redisDown) {
    return { status: 'degraded', unavailable: failedProbes };
  }
  return {
    status: 'degraded',
    unavailable: ['redis', ...failedProbes],
    redis: 'unavailable',
    unavailable_since: cluster.unavailableSince ?? Math.floor(Date.now() / 1000),
    undelivered_messages: cluster.undeliveredMessages,
  };
}

async function failedProbes(probes: WebContext['readinessProbes']): Promise<string[]> {
  const results = await Promise.all(Object.entries(probes).map(async ([name, probe]) => {
    const reachable = await probe().catch(() => false);
    return reachable ? null : name;
  }));
  return results.filter((name): name is string => name !== null);
}

/**
 * Registers `GET /healthz`, a liveness check that responds while the process runs, and `GET /readyz`:
 * 200 `{"status":"ready"}`, or 503 with `"status":"degraded"` while the configured Redis, or another
 * probed dependency such as an external issuer's JWKS, is unreachable. A degraded node still serves
 * its own connections, but its messages reach no other node, and its revocations reach them only
 * through the database poll.
 */
export function registerHealthRoutes(app: FastifyInstance, context: Pick<WebContext, 'clusterStatus' | 'readinessProbes'>): void {
  app.get('/healthz', async (_request, reply) => reply.header('cache-control', 'no-store').send({ status: 'ok' }));

  app.get(readinessPath, async (_request, reply) => {
    const readiness = readinessOf(context.clusterStatus?.() ?? null, await failedProbes(context.readinessProbes));
    return reply.code(readiness.status === 'ready' ? 200 : 503).header('cache-control', 'no-store').send(readiness);
  });
}
