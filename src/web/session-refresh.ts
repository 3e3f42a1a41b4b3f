import * as oauth from 'openid-client';
import type { FastifyInstance } from 'fastify';

import { gatewayClientId } from '../auth/provider.ts';
import { PortcullisError } from '../errors.ts';
import { sessionCookieName } from '../gateway/handshake.ts';
import type { VerifiedToken } from '../gateway/token-verifier.ts';
import { deleteBrowserSession, findBrowserSession, upsertBrowserSession } from '../store/browser-sessions.ts';
import { epochSeconds } from '../store/database.ts';
import type { WebContext } from './context.ts';
import { expiredCookie, readCookie, sessionCookie } from './cookies.ts';
import { csrfTokenFor, csrfTokenMatches } from './csrf.ts';
import { isUnavailableResponse, sendError, summarizeOauthError } from './responses.ts';

interface RotatedSession {
  accessToken: string;
  verified: VerifiedToken;
}

/**
 * Uses the refresh token the gateway keeps for a browser session to get a new access token, stores
 * the rotated refresh token, and moves every live socket of the session to the new token. Returns
 * null when the auth server refuses, which ends the session.
 */
async function rotateSession(context: WebContext, grantId: string): Promise<RotatedSession | null> {
  const stored = await findBrowserSession(context.store, grantId);
  if (!stored) {
    return null;
  }

  let tokens: oauth.TokenEndpointResponse;
  try {
    tokens = await oauth.refreshTokenGrant(await context.bffClient(), stored.refresh_token);
  } catch (error) {
    // The refresh token is still good once the database is reachable again, so the session stays.
    if (isUnavailableResponse(error)) {
      throw new PortcullisError('temporarily_unavailable', { cause: error });
    }
    context.logger.warn({ event: 'session.refresh_failed', grant_id: grantId, oauth_error: summarizeOauthError(error) }, 'session refresh refused by the auth server');
    await deleteBrowserSession(context.store, grantId);
    // The session is over. Revoking its grant makes every node refuse its remaining access tokens
    // at once, including handshakes that would otherwise be admitted from a cached verdict.
    await context.revocations.revokeGrant(grantId, 'session_ended', context.options.accessTokenTtlSeconds + context.options.clockLeewaySeconds);
    return null;
  }

  const verified = await context.verifyToken(tokens.access_token);
  if (verified.grantId !== grantId || !tokens.refresh_token) {
    throw new Error('the auth server returned a refreshed token for another grant or without a refresh token');
  }
  await upsertBrowserSession(context.store, {
    grant_id: grantId,
    username: verified.sub,
    refresh_token: tokens.refresh_token,
    expires_at: epochSeconds() + context.options.refreshTokenTtlSeconds,
  });

  for (const connection of context.registry.connectionsOfGrant(grantId)) {
    connection.applyToken?.(verified);
  }
  context.logger.info({ event: 'session.refreshed', sub: verified.sub, grant_id: grantId, expires_at: verified.exp }, 'browser session refreshed');
  return { accessToken: tokens.access_token, verified };
}

/**
 * Registers `POST /session/refresh`. Concurrent refreshes of one session share a single rotation:
 * refresh tokens rotate on every use and reuse revokes the grant, so two rotations racing would log
 * the user out.
 */
export function registerRefreshRoute(app: FastifyInstance, context: WebContext): void {
  const inFlight = new Map<string, Promise<RotatedSession | null>>();

  app.post('/session/refresh', async (request, reply) => {
    const token = readCookie(request.headers.cookie, sessionCookieName);
    // An expired access token still identifies its session; the refresh token decides the outcome.
    const session = token ? await context.verifyExpiredSessionToken(token).catch(() => null) : null;
    if (!session?.grantId || session.clientId !== gatewayClientId) {
      return sendError(reply, 'login_required');
    }

    const grantId = session.grantId;
    const csrfHeader = request.headers['x-csrf-token'];
    if (typeof csrfHeader !== 'string' || !csrfTokenMatches(context.csrfKey, grantId, csrfHeader)) {
      return sendError(reply, 'csrf_invalid');
    }

    let pending = inFlight.get(grantId);
    if (!pending) {
      pending = rotateSession(context, grantId).finally(() => inFlight.delete(grantId));
      inFlight.set(grantId, pending);
    }

    const rotated = await pending;
    if (!rotated) {
      return sendError(reply.header('set-cookie', expiredCookie(sessionCookieName)), 'login_required');
    }
    return reply
      .header('set-cookie', sessionCookie(rotated.accessToken, rotated.verified.exp - epochSeconds()))
      .header('cache-control', 'no-store')
      .send({ expires_at: rotated.verified.exp, csrf_token: csrfTokenFor(context.csrfKey, grantId) });
  });
}
