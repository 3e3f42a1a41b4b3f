import formbody from '@fastify/formbody';
import type { FastifyInstance } from 'fastify';

import { registerAdminRoutes } from '../admin/routes.ts';
import { registerInteractionRoutes } from '../auth/interactions.ts';
import { errorBody, PortcullisError, unavailableRetryAfterSeconds } from '../errors.ts';
import { registerWebSocketPathRoute } from '../gateway/websocket-path-route.ts';
import type { WebContext } from './context.ts';
import { registerHealthRoutes } from './health-routes.ts';
import { registerPublishRoute } from './publish-route.ts';
import { registerSessionRoutes } from './session-routes.ts';
import { registerStaticRoutes } from './static-routes.ts';

/**
 * Registers the HTTP routes of one process on `app`, with the error handler that responds to every
 * failure with a catalogue code. `role` leaves out the routes of the auth server or the gateway.
 */
export async function configureRoutes(app: FastifyInstance, context: WebContext, role: { servesAuth: boolean; servesGateway: boolean }): Promise<void> {
  await app.register(formbody, { bodyLimit: 16 * 1024 });

  app.setErrorHandler((error, _request, reply) => {
    if (error instanceof PortcullisError) {
      if (error.code === 'temporarily_unavailable') {
        reply.header('retry-after', String(unavailableRetryAfterSeconds));
      }
      return reply.code(error.status).send(errorBody(error.code));
    }
    const status = (error as { statusCode?: number }).statusCode ?? 500;
    if (status === 404) {
      return reply.code(404).send(errorBody('not_found'));
    }
    if (status === 405) {
      return reply.code(405).send(errorBody('method_not_allowed'));
    }
    if (status >= 400 && status < 500) {
      return reply.code(status).send(errorBody('invalid_request'));
    }
    context.logger.error({ event: 'http.server_error', err: error }, 'request failed with an internal error');
    return reply.code(500).send(errorBody('server_error'));
  });
  app.setNotFoundHandler((_request, reply) => reply.code(404).send(errorBody('not_found')));

  registerHealthRoutes(app, context);
  if (role.servesAuth) {
    await registerStaticRoutes(app);
    registerSessionRoutes(app, context);
    registerInteractionRoutes(app, context);
  }
  // The console needs both the browser login and this process's live connections.
  if (role.servesAuth && role.servesGateway) {
    registerAdminRoutes(app, context);
  }
  if (role.servesGateway) {
    registerPublishRoute(app, context);
    registerWebSocketPathRoute(app);
  }
}
