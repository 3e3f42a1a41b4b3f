import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';

import { metricsScope } from '../auth/channel-scopes.ts';
import { errorBody, PortcullisError, unavailableRetryAfterSeconds } from '../errors.ts';
import type { WebContext } from '../web/context.ts';
import { challengeFor, verifyBearerCaller } from '../web/bearer-caller.ts';

/** Path of the Prometheus scrape endpoint, on the HTTPS listener and on the metrics listener. */
export const metricsPath = '/metrics';

/** Server parts the scrape route uses, and the registry it serves. */
export type MetricsRouteContext = Pick<WebContext, 'store' | 'logger' | 'verifyToken' | 'revocationScope' | 'dpop' | 'options'> & { registry: Registry };

/** Returns the scrape body and its content type (Prometheus text format 0.0.4). */
export async function scrape(registry: Registry): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}

/**
 * Accepts only a bearer access token with the `admin:metrics` scope. The metrics name client ids
 * nowhere, but connection counts and error rates still tell an attacker how an attack goes.
 */
async function checkScraper(context: MetricsRouteContext, request: FastifyRequest): Promise<void> {
  const verified = await verifyBearerCaller(context, request);
  if (!verified.scope.split(' ').includes(metricsScope)) {
    throw new PortcullisError('forbidden');
  }
}

/** Registers `GET /metrics`, the Prometheus scrape endpoint for a token with the `admin:metrics` scope. */
export function registerMetricsRoute(app: FastifyInstance, context: MetricsRouteContext): void {
  app.get(metricsPath, {
    onRequest: async (request) => checkScraper(context, request),
    errorHandler: (error: FastifyError, request, reply) => {
      if (!(error instanceof PortcullisError)) {
        throw error;
      }

      const { code } = error;
      context.logger.info({ event: 'metrics.rejected', code, ip: request.ip }, 'metrics scrape rejected');
      const challenge = challengeFor(code);
      if (challenge) {
        reply.header('www-authenticate', challenge);
      }
      if (code === 'temporarily_unavailable') {
        reply.header('retry-after', String(unavailableRetryAfterSeconds));
      }
      return reply.code(error.status).header('cache-control', 'no-store').send(errorBody(code));
    },
  }, async (_request, reply) => {
    const { contentType, body } = await scrape(context.registry);
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}
