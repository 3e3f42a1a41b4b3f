import crypto from 'node:crypto';

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type Provider from 'oidc-provider';

import { errorBody, PortcullisError } from '../errors.ts';
import { fromProviderError } from '../store/oidc-adapter.ts';
import { findUser } from '../store/users.ts';
import { escapeHtml, renderPage } from '../web/html.ts';
import type { WebContext } from '../web/context.ts';
import { dummyVerify, verifyPassword } from './passwords.ts';
import { gatewayClientId } from './provider.ts';

const loginFailedMessage = 'Invalid username or password.';
const throttledMessage = 'Too many failed attempts. Wait a few minutes and try again.';

/** Derives the login form's CSRF token from the interaction id, which the interaction cookie binds. */
function loginCsrfToken(csrfKey: string, uid: string): string {
  return crypto.createHmac('sha256', csrfKey).update(`portcullis-login-v1:${uid}`, 'utf8').digest('base64url');
}

function loginCsrfMatches(csrfKey: string, uid: string, presented: unknown): boolean {
  if (typeof presented !== 'string') {
    return false;
  }
  const expected = Buffer.from(loginCsrfToken(csrfKey, uid));
  const actual = Buffer.from(presented);
  return expected.length === actual.length && crypto.timingSafeEqual(expected, actual);
}

function renderLoginForm(uid: string, csrfToken: string, message: string | null): string {
  const notice = message ? `<p class="error" role="alert">${escapeHtml(message)}</p>` : '';
  return renderPage('Log in', `${notice}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="on">
<input type="hidden" name="csrf_token" value="${escapeHtml(csrfToken)}">
<label>Username <input name="username" autocomplete="username" required maxlength="64" autofocus></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required maxlength="1024"></label>
<button type="submit" id="login-submit">Log in</button>
</form>`);
}

/**
 * Creates the grant a finished login consents to, with the scopes and resources of the request.
 * The gateway and devices are first-party clients, so there is no separate consent screen. In the
 * device flow, the confirmation page is where a user approves a device.
 */
async function grantFor(provider: Provider, details: Awaited<ReturnType<Provider['interactionDetails']>>, accountId: string): Promise<string> {
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: details.params.client_id as string });
  if (!grant) {
    throw new Error('the interaction refers to a grant that no longer exists');
  }

  const prompt = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
  if (prompt.missingOIDCScope) {
    grant.addOIDCScope(prompt.missingOIDCScope.join(' '));
  }
  if (prompt.missingOIDCClaims) {
    grant.addOIDCClaims(prompt.missingOIDCClaims);
  }
  for (const [resource, scopes] of Object.entries(prompt.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  return grant.save();
}

/**
 * Tells whether an interaction must show the login form. Approving a device hands it a grant for
 * the user, so it always requires the password, even within an existing auth-server session: a
 * shared browser or a phished approval link must not approve with one click.
 */
function requiresPassword(details: Awaited<ReturnType<Provider['interactionDetails']>>): boolean {
  if (details.prompt.name === 'login') {
    return true;
  }
  // A consent step that directly follows a password login in this same flow needs no second one.
  const justLoggedIn = details.lastSubmission?.login !== undefined;
  return details.params.client_id !== gatewayClientId && !justLoggedIn;
}

/** Registers the login and consent steps of oidc-provider's interactions under `/interaction/:uid`. */
export function registerInteractionRoutes(app: FastifyInstance, context: WebContext): void {
  const auth = context.auth;
  if (!auth) {
    throw new Error('the interaction routes need the built-in auth server (--role all or auth)');
  }
  const loadDetails = async (request: FastifyRequest, reply: FastifyReply) => {
    try {
      return await auth.provider.interactionDetails(request.raw, reply.raw);
    } catch (error) {
      // An unreachable database is no sign of an invalid login state, so it is not reported as one.
      if (fromProviderError(error) instanceof PortcullisError) {
        throw error;
      }
      return null;
    }
  };
  // oidc-provider's models reject with its own error while the database cannot be reached. The
  // server's error handler responds to the store error behind it with 503 temporarily_unavailable.
  const errorHandler = (error: unknown) => {
    throw fromProviderError(error);
  };

  app.get<{ Params: { uid: string } }>('/interaction/:uid', { errorHandler }, async (request, reply) => {
    const details = await loadDetails(request, reply);
    if (!details || details.uid !== request.params.uid) {
      return reply.code(400).send(errorBody('login_state_invalid'));
    }

    if (requiresPassword(details)) {
      return reply.type('text/html').header('cache-control', 'no-store')
        .send(renderLoginForm(details.uid, loginCsrfToken(context.csrfKey, details.uid), null));
    }

    const accountId = details.session?.accountId;
    if (!accountId) {
      return reply.code(400).send(errorBody('login_state_invalid'));
    }
    const { provider } = auth;
    const grantId = await grantFor(provider, details, accountId);
    reply.hijack();
    await provider.interactionFinished(request.raw, reply.raw, { consent: { grantId } }, { mergeWithLastSubmission: true });
  });

  app.post<{ Params: { uid: string }; Body: Record<string, unknown> }>('/interaction/:uid/login', { errorHandler }, async (request, reply) => {
    const details = await loadDetails(request, reply);
    if (!details || details.uid !== request.params.uid || !requiresPassword(details)) {
      return reply.code(400).send(errorBody('login_state_invalid'));
    }

    const body = request.body ?? {};
    const csrfToken = loginCsrfToken(context.csrfKey, details.uid);
    if (!loginCsrfMatches(context.csrfKey, details.uid, body.csrf_token)) {
      return reply.code(403).send(errorBody('csrf_invalid'));
    }

    const username = typeof body.username === 'string' ? body.username.slice(0, 64) : '';
    const password = typeof body.password === 'string' ? body.password.slice(0, 1024) : '';
    const attempt = { username, ip: request.ip };

    const throttle = context.throttle.reserve(attempt);
    if (!throttle.allowed) {
      context.logger.warn({ event: 'login.throttled', username, ip: request.ip }, 'login throttled');
      // The page is for people; the header gives scripts and monitors the stable code.
      return reply.code(429).header('retry-after', String(throttle.retryAfterSeconds))
        .header('x-portcullis-error', 'login_throttled').type('text/html')
        .send(renderLoginForm(details.uid, csrfToken, throttledMessage));
    }

    let user: Awaited<ReturnType<typeof findUser>>;
    let passwordMatches: boolean;
    try {
      user = username ? await findUser(context.store, username) : undefined;
      passwordMatches = user ? await verifyPassword(user.password_hash, password) : await dummyVerify(password);
    } catch (error) {
      // The reservation must end, or the account stays blocked. An unreachable database is no
      // evidence of guessing, so it must not lock the account during an outage.
      if (error instanceof PortcullisError && error.code === 'temporarily_unavailable') {
        context.throttle.cancel(attempt);
      } else {
        context.throttle.recordFailure(attempt);
      }
      throw error;
    }
    if (!user || !passwordMatches || user.disabled) {
      context.throttle.recordFailure(attempt);
      context.logger.warn({ event: 'login.failed', username, ip: request.ip }, 'login failed');
      return reply.code(401).header('x-portcullis-error', 'login_failed').type('text/html')
        .send(renderLoginForm(details.uid, csrfToken, loginFailedMessage));
    }

    context.throttle.recordSuccess(attempt);
    context.logger.info({ event: 'login.succeeded', username, ip: request.ip }, 'login succeeded');
    const { provider } = auth;
    const grantId = await grantFor(provider, details, user.username);
    reply.hijack();
    await provider.interactionFinished(request.raw, reply.raw, {
      login: { accountId: user.username },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  });
}
