import type { FastifyInstance } from 'fastify';

import { errorBody } from '../errors.ts';
import { websocketPath } from './upgrade.ts';

/**
 * Registers the route that responds to every request to `/ws` reaching the HTTP router, which means
 * it is not an upgrade, with 426 `upgrade_required` and `Upgrade: websocket` (RFC 9110 section
 * 15.5.22). Such a request often comes from a WebSocket client behind a proxy that dropped the upgrade
 * headers, and 426 names the cause where 404 would not.
 */
export function registerWebSocketPathRoute(app: FastifyInstance): void {
  app.all(websocketPath, async (_request, reply) => reply
    .code(426)
    .header('upgrade', 'websocket')
    .header('cache-control', 'no-store')
    .header('x-portcullis-error', 'upgrade_required')
    .send(errorBody('upgrade_required')));
}
