import type { FastifyRequest } from 'fastify';

import { PortcullisError } from '../errors.ts';
import type { VerifiedToken } from '../gateway/token-verifier.ts';
import { isActiveAdmin } from '../store/users.ts';
import type { WebContext } from '../web/context.ts';
import { csrfTokenMatches } from '../web/csrf.ts';
import { currentSession } from '../web/session-routes.ts';

/** The browser session behind an admin request. */
export interface AdminSession {
  /** Username of the admin, the session token's `sub`. */
  username: string;
  session: VerifiedToken;
}

/**
 * Checks that the request carries a valid browser session of an enabled user with the admin role.
 * The role is read from the database on every call, so `portcullis users admin NAME --off` takes
 * effect at the next request. Throws `login_required` without a session and `forbidden` for any
 * other user.
 */
export async function requireAdmin(context: WebContext, request: FastifyRequest): Promise<AdminSession> {
  const session = await currentSession(context, request);
  if (!session) {
    throw new PortcullisError('login_required');
  }

  if (!await isActiveAdmin(context.store, session.sub)) {
    throw new PortcullisError('forbidden');
  }

  return { username: session.sub, session };
}

/**
 * Checks the `X-CSRF-Token` header against the session's token, as `POST /logout` does, because a
 * cross-site form post carries the session cookie but cannot set this header. Throws `csrf_invalid`.
 */
export function requireCsrfHeader(context: WebContext, admin: AdminSession, request: FastifyRequest): void {
  const header = request.headers['x-csrf-token'];
  if (typeof header !== 'string' || !csrfTokenMatches(context.csrfKey, admin.session.grantId!, header)) {
    throw new PortcullisError('csrf_invalid');
  }
}
