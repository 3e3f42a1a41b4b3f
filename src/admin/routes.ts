import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { PortcullisError } from '../errors.ts';
import type { ConnectionSummary } from '../gateway/registry.ts';
import type { WebContext } from '../web/context.ts';
import { disableDevice, disableUser, revokeConnection } from './admin-actions.ts';
import { requireAdmin, requireCsrfHeader, type AdminSession } from './admin-guard.ts';
import { renderAdminForbiddenPage } from './admin-page.ts';
import { ConnectionSampler, countRejectionsByCode, minuteSeries, statsWindowMs } from './admin-stats.ts';
import { startStatsFeed } from './stats-feed.ts';

const publicDirectory = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../public');

/**
 * Filters of the connections list. Each keeps the connections whose field contains the given text.
 * `user` matches the token's `sub`, `device` the client id, and `origin` the page origin of browser
 * connections (a device connection records its client id in that place).
 */
interface ConnectionFilters {
  user?: string;
  device?: string;
  origin?: string;
}

/**
 * Registers the admin console: the page `GET /admin`, its script, and the JSON API under
 * `/admin/api/`. Every route requires the browser session of an enabled admin, and every state
 * change is a POST that checks the `X-CSRF-Token` header.
 */
export function registerAdminRoutes(app: FastifyInstance, context: WebContext): void {
  // The chart shows per-minute peaks of these samples, so it misses only connections shorter than the interval.
  const sampler = new ConnectionSampler(context.registry);
  const stopStatsFeed = startStatsFeed({ registry: context.registry, broker: context.broker, sampler, logger: context.logger });
  app.addHook('onClose', async () => stopStatsFeed());

  registerAdminPage(app, context);

  app.get('/admin/api/connections', async (request, reply) => {
    await requireAdmin(context, request);
    const filters = request.query as ConnectionFilters;
    return noStore(reply).send({ connections: filterConnections(context.registry.summaries(), filters) });
  });

  app.get('/admin/api/rejections', async (request, reply) => {
    await requireAdmin(context, request);
    const since = Date.now() - statsWindowMs;
    return noStore(reply).send({ since, rejections: await countRejectionsByCode(context.store, since) });
  });

  app.get('/admin/api/series', async (request, reply) => {
    await requireAdmin(context, request);
    return noStore(reply).send({ points: await minuteSeries(context.store, sampler) });
  });

  registerAdminAction(app, context, '/admin/api/connections/:id/revoke', async (admin, id) => {
    const target = await revokeConnection(context, id);
    context.logger.info({ event: 'admin.session_revoked', admin: admin.username, connection_id: id, ...target }, 'admin revoked a session');
    return { revoked: true, connection_id: id, ...target };
  });

  registerAdminAction(app, context, '/admin/api/devices/:id/disable', async (admin, clientId) => {
    await disableDevice(context, clientId);
    context.logger.info({ event: 'admin.device_disabled', admin: admin.username, client_id: clientId }, 'admin removed a device');
    return { disabled: true, client_id: clientId };
  });

  registerAdminAction(app, context, '/admin/api/users/:id/disable', async (admin, username) => {
    await disableUser(context, username);
    context.logger.info({ event: 'admin.user_disabled', admin: admin.username, username }, 'admin disabled a user');
    return { disabled: true, username };
  });
}

/** Serves the console page and its assets: a login redirect without a session, a 403 page for non-admins. */
function registerAdminPage(app: FastifyInstance, context: WebContext): void {
  const page = fs.readFileSync(path.join(publicDirectory, 'admin.html'));

  app.get('/admin', async (request, reply) => {
    try {
      await requireAdmin(context, request);
    } catch (error) {
      if (error instanceof PortcullisError && error.code === 'login_required') {
        return noStore(reply).redirect('/login', 303);
      }
      if (error instanceof PortcullisError && error.code === 'forbidden') {
        return noStore(reply).code(403).type('text/html; charset=utf-8').send(renderAdminForbiddenPage());
      }
      throw error;
    }
    return noStore(reply).type('text/html; charset=utf-8').send(page);
  });

  for (const file of ['admin.js', 'admin-chart.js']) {
    const script = fs.readFileSync(path.join(publicDirectory, file));
    app.get(`/static/${file}`, async (_request, reply) => reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(script));
  }
}

/**
 * Registers one state-changing admin action as a POST on `route`, whose `:id` parameter the action
 * receives. The admin check runs before the CSRF check, so a request without a session gets
 * `login_required` rather than `csrf_invalid`.
 */
function registerAdminAction(
  app: FastifyInstance,
  context: WebContext,
  route: string,
  action: (admin: AdminSession, id: string) => Promise<Record<string, unknown>>,
): void {
  app.post(route, async (request: FastifyRequest<{ Params: { id: string } }>, reply) => {
    const admin = await requireAdmin(context, request);
    requireCsrfHeader(context, admin, request);
    return noStore(reply).send(await action(admin, request.params.id));
  });
}

function filterConnections(connections: ConnectionSummary[], filters: ConnectionFilters): ConnectionSummary[] {
  const contains = (value: string | null, expected: unknown) => typeof expected !== 'string' || expected === '' || (value ?? '').includes(expected);
  return connections.filter((connection) => contains(connection.sub, filters.user)
    && contains(connection.client_id, filters.device)
    && contains(connection.kind === 'browser' ? connection.origin : null, filters.origin));
}

function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store');
}
