import * as oauth from 'openid-client';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { gatewayClientId } from '../auth/provider.ts';
import { errorBody, PortcullisError, type ErrorCode } from '../errors.ts';
import { sessionCookieName } from '../gateway/handshake.ts';
import { findRevocation } from '../gateway/guard/revocation.ts';
import type { VerifiedToken } from '../gateway/token-verifier.ts';
import { deleteBrowserSession, findBrowserSession, upsertBrowserSession } from '../store/browser-sessions.ts';
import { epochSeconds } from '../store/database.ts';
import type { WebContext } from './context.ts';
import { expiredCookie, loginStateCookie, loginStateCookieName, readCookie, sessionCookie } from './cookies.ts';
import { csrfTokenFor, csrfTokenMatches } from './csrf.ts';
import { isUnavailableResponse, sendError, summarizeOauthError } from './responses.ts';
import { registerRefreshRoute } from './session-refresh.ts';
import { signValue, verifySignedValue } from './signed-value.ts';

interface LoginState {
  state: string;
  verifier: string;
  /** Epoch seconds after which the state is refused. */
  exp: number;
}

const loginStateTtlSeconds = 600;


/** Registers the browser session routes: `/login`, `/login/callback`, `/session` and `/logout`. */
export function registerSessionRoutes(app: FastifyInstance, context: WebContext): void {
  const callbackUrl = `${context.options.publicUrl}/login/callback`;

  app.get('/login', async (_request, reply) => {
    const configuration = await context.bffClient();
    const verifier = oauth.randomPKCECodeVerifier();
    const state = oauth.randomState();
    const authorizationUrl = oauth.buildAuthorizationUrl(configuration, {
      redirect_uri: callbackUrl,
      // No scope named: the auth server grants the user's current channel scopes.
      resource: context.gatewayAudience,
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      // Always ask for the password: logout must not be undone by a lingering auth-server session.
      prompt: 'login',
    });

    const loginState: LoginState = { state, verifier, exp: epochSeconds() + loginStateTtlSeconds };
    return reply
      .header('set-cookie', loginStateCookie(signValue(context.stateKey, loginState), loginStateTtlSeconds))
      .header('cache-control', 'no-store')
      .redirect(authorizationUrl.pathname + authorizationUrl.search, 303);
  });

  app.get('/login/callback', async (request, reply) => {
    const loginState = verifySignedValue<LoginState>(context.stateKey, readCookie(request.headers.cookie, loginStateCookieName));
    if (!loginState || loginState.exp < epochSeconds()) {
      return sendError(reply.header('set-cookie', expiredCookie(loginStateCookieName)), 'login_state_invalid');
    }

    let tokens: oauth.TokenEndpointResponse;
    try {
      const currentUrl = new URL(request.url, context.options.publicUrl);
      tokens = await oauth.authorizationCodeGrant(await context.bffClient(), currentUrl, {
        pkceCodeVerifier: loginState.verifier,
        expectedState: loginState.state,
      });
    } catch (error) {
      // An outage is no sign of an expired or tampered login, so it is not reported as one.
      if (isUnavailableResponse(error)) {
        throw new PortcullisError('temporarily_unavailable', { cause: error });
      }
      context.logger.warn({ event: 'login.callback_failed', oauth_error: summarizeOauthError(error) }, 'login callback failed');
      return sendError(reply.header('set-cookie', expiredCookie(loginStateCookieName)), 'login_state_invalid');
    }

    const verified = await context.verifyToken(tokens.access_token);
    if (!verified.grantId || !tokens.refresh_token) {
      throw new Error('the auth server returned a session token without a grant or refresh token');
    }

    await upsertBrowserSession(context.store, {
      grant_id: verified.grantId,
      username: verified.sub,
      refresh_token: tokens.refresh_token,
      expires_at: epochSeconds() + context.options.refreshTokenTtlSeconds,
    });
    context.logger.info({ event: 'session.created', sub: verified.sub, grant_id: verified.grantId }, 'browser session created');

    return reply
      .header('set-cookie', [expiredCookie(loginStateCookieName), sessionCookie(tokens.access_token, verified.exp - epochSeconds())])
      .header('cache-control', 'no-store')
      .redirect('/', 303);
  });

  app.get('/session', async (request, reply) => {
    const session = await currentSession(context, request);
    if (!session) {
      return sendError(reply, 'login_required');
    }

    return reply.header('cache-control', 'no-store').send({
      user: session.sub,
      expires_at: session.exp,
      csrf_token: csrfTokenFor(context.csrfKey, session.grantId!),
    });
  });

  registerRefreshRoute(app, context);

  app.post('/logout', async (request, reply) => {
    const token = readCookie(request.headers.cookie, sessionCookieName);
    const session = token ? await context.verifyExpiredSessionToken(token).catch(() => null) : null;
    if (!session?.grantId || session.clientId !== gatewayClientId) {
      return sendError(reply, 'login_required');
    }

    const csrfHeader = request.headers['x-csrf-token'];
    if (typeof csrfHeader !== 'string' || !csrfTokenMatches(context.csrfKey, session.grantId, csrfHeader)) {
      return sendError(reply, 'csrf_invalid');
    }

    await endBrowserSession(context, session);
    return reply
      .code(200)
      .header('set-cookie', expiredCookie(sessionCookieName))
      .header('cache-control', 'no-store')
      .send({ logged_out: true });
  });
}

/** Returns the verified, unrevoked session token of the request, or null. */
export async function currentSession(context: WebContext, request: FastifyRequest): Promise<VerifiedToken | null> {
  const token = readCookie(request.headers.cookie, sessionCookieName);
  if (!token) {
    return null;
  }

  const verified = await context.verifyToken(token).catch(() => null);
  if (!verified?.grantId || verified.clientId !== gatewayClientId) {
    return null;
  }

  // The same rules as a handshake: revoked grant or token, ended session, disabled user.
  return await findRevocation(context.store, 'browser', verified) ? null : verified;
}

/** Revokes the session's grant at the auth server and deletes the server-side session. */
async function endBrowserSession(context: WebContext, session: VerifiedToken): Promise<void> {
  const grantId = session.grantId!;
  const stored = await findBrowserSession(context.store, grantId);

  // The deny-list entry comes first, so a failing revocation request cannot leave the token usable.
  // It also closes the session's live sockets with 4403.
  await context.revocations.revokeGrant(grantId, 'logout', context.options.accessTokenTtlSeconds + context.options.clockLeewaySeconds);
  if (stored) {
    try {
      await oauth.tokenRevocation(await context.bffClient(), stored.refresh_token, { token_type_hint: 'refresh_token' });
    } catch (error) {
      context.logger.error({ event: 'session.revocation_failed', grant_id: grantId, oauth_error: summarizeOauthError(error) }, 'refresh token revocation failed');
    }
  }

  await deleteBrowserSession(context.store, grantId);
  await context.store.deleteFrom('oidc_payloads').where('grant_id', '=', grantId).execute();
  await deleteAuthServerSessions(context, grantId);
  context.logger.info({ event: 'session.revoked', sub: session.sub, grant_id: grantId, reason: 'logout' }, 'browser session ended');
}

/**
 * Deletes the auth server's own login sessions that hold this grant, so the device-flow approval
 * page requests the password again after logout.
 */
async function deleteAuthServerSessions(context: WebContext, grantId: string): Promise<void> {
  const rows = await context.store.selectFrom('oidc_payloads').select(['id', 'payload']).where('model', '=', 'Session').execute();
  for (const row of rows) {
    const payload = JSON.parse(row.payload) as { authorizations?: Record<string, { grantId?: string }> };
    const holdsGrant = Object.values(payload.authorizations ?? {}).some((authorization) => authorization.grantId === grantId);
    if (holdsGrant) {
      await context.store.deleteFrom('oidc_payloads').where('model', '=', 'Session').where('id', '=', row.id).execute();
    }
  }
}
