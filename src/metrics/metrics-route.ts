import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';

import { metricsScope } from '../auth/channel-scopes.ts';
import { gatewayClientId } from '../auth/provider.ts';
import { errorBody, PortcullisError, unavailableRetryAfterSeconds } from '../errors.ts';
import { findRevocation } from '../gateway/guard/revocation.ts';
import { urlCarriesCredentials } from '../gateway/guard/token-in-url.ts';
import type { WebContext } from '../web/context.ts';
import { bearerToken, challengeFor } from '../web/publish-route.ts';

/** Path of the Prometheus scrape endpoint, on the HTTPS listener and on the metrics listener. */
export const metricsPath = '/metrics';

/** Server parts the scrape route uses, and the registry it serves. */
export type MetricsRouteContext = Pick<WebContext, 'store' | 'logger' | 'verifyToken' | 'revocationScope'> & { registry: Registry };

/** Returns the scrape body and its content type (Prometheus text format 0.0.4). */
export async function scrape(registry: Registry): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}

/**
 * Accepts only a bearer access token with the `admin:metrics` scope. The metrics name client ids
 * nowhere, but connection counts and error rates still tell an attacker how an attack goes.
 */
async function checkScraper(context: MetricsRouteContext, request: FastifyRequest): Promise<void> {
  // RFC 6750 section 5.3: a token in the URL ends up in logs, so it is rejected as on the other endpoints.
  if (urlCarriesCredentials(new URL(request.url, 'https://portcullis.invalid'))) {
    throw new PortcullisError('token_in_url');
  }

  const token = bearerToken(request);
  if (!token) {
    throw new PortcullisError('token_missing');
  }

  const verified = await context.verifyToken(token);
  // A browser session token belongs behind the cookie, and no user session has admin:metrics anyway.
  if (verified.clientId === gatewayClientId) {
    throw new PortcullisError('token_invalid');
  }

  const revocation = await findRevocation(context.store, 'device', verified, context.revocationScope);
  if (revocation) {
    throw new PortcullisError(revocation);
  }
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
