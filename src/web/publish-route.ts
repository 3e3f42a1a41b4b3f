import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';

import type { ChannelMessage } from '../channels/broker.ts';
import { exceedsDataDepth } from '../channels/data.ts';
import { parseChannelName } from '../channels/names.ts';
import { mayPublish, mayPublishAnywhere, permissionsFromScope, type ChannelPermissions } from '../channels/permissions.ts';
import { errorBody, PortcullisError, unavailableRetryAfterSeconds, type ErrorCode } from '../errors.ts';
import type { VerifiedToken } from '../gateway/token-verifier.ts';
import { challengeFor, verifyBearerCaller } from './bearer-caller.ts';
import type { WebContext } from './context.ts';

/** Path of the backend publish API. */
export const publishPath = '/api/publish';

/** A checked publish request body. */
export interface PublishRequest {
  channel: string;
  data: unknown;
}

/** The caller of one publish request, set by the credential check before the body is read. */
interface Caller {
  verified: VerifiedToken;
  permissions: ChannelPermissions;
  /** The requested channel once the body is read, kept for the log line of a rejection. */
  channel?: string;
}

const callers = new WeakMap<FastifyRequest, Caller>();

/**
 * Checks a parsed publish body: a JSON object with `channel` (a valid channel name) and `data` (any
 * JSON value, `null` included, at most 32 levels deep). Other members are ignored, as in a WebSocket
 * `publish` frame. Throws `invalid_request`, `invalid_channel` or `data_too_deep`.
 */
export function readPublishRequest(body: unknown): PublishRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new PortcullisError('invalid_request');
  }
  if (!Object.hasOwn(body, 'channel') || !Object.hasOwn(body, 'data')) {
    throw new PortcullisError('invalid_request');
  }

  const { channel, data } = body as Record<string, unknown>;
  if (typeof channel !== 'string' || !parseChannelName(channel)) {
    throw new PortcullisError('invalid_channel');
  }
  if (exceedsDataDepth(data)) {
    throw new PortcullisError('data_too_deep');
  }
  return { channel, data };
}


function isJsonContentType(header: string | undefined): boolean {
  return header?.split(';')[0].trim().toLowerCase() === 'application/json';
}

/**
 * Runs before the body is read, so a caller without a usable token or without any publish scope
 * cannot make the server parse a body of up to `maxPayloadBytes`.
 */
async function checkCaller(context: WebContext, request: FastifyRequest): Promise<void> {
  // Only the Authorization header counts. A browser attaches the session cookie to cross-site
  // requests but sets this header only after a CORS preflight, and this path has no OPTIONS route
  // and sends no CORS headers. So the endpoint needs no CSRF token.
  const verified = await verifyBearerCaller(context, request);

  const permissions = permissionsFromScope(verified.scope, { clientId: verified.clientId, sub: verified.sub });
  callers.set(request, { verified, permissions });
  if (!mayPublishAnywhere(permissions)) {
    throw new PortcullisError('forbidden');
  }

  if (!isJsonContentType(request.headers['content-type'])) {
    throw new PortcullisError('unsupported_media_type');
  }
}

// Fastify's own body errors, mapped to catalogue codes. Any other 4xx from the parser is a
// malformed body (invalid JSON, an empty body, a `__proto__` key).
function codeOfBodyError(error: FastifyError): ErrorCode | undefined {
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return 'payload_too_large';
  }
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return 'unsupported_media_type';
  }
  const status = error.statusCode ?? 500;
  return status >= 400 && status < 500 ? 'invalid_request' : undefined;
}


/**
 * Registers `POST /api/publish`, which lets a backend with a client-credentials access token publish
 * one message to the subscribers on this node. The token's `publish:` scopes decide which channels
 * it may use, and the 202 response counts the local subscribers reached.
 */
export function registerPublishRoute(app: FastifyInstance, context: WebContext): void {
  app.post(publishPath, {
    bodyLimit: context.options.maxPayloadBytes,
    onRequest: async (request) => checkCaller(context, request),
    errorHandler: (error: FastifyError, request, reply) => {
      const code = error instanceof PortcullisError ? error.code : codeOfBodyError(error);
      if (!code) {
        throw error;
      }

      const caller = callers.get(request);
      context.logger.info({ event: 'publish.rejected', code, client_id: caller?.verified.clientId, channel: caller?.channel, ip: request.ip }, 'publish request rejected');
      const challenge = challengeFor(code);
      if (challenge) {
        reply.header('www-authenticate', challenge);
      }
      if (code === 'temporarily_unavailable') {
        reply.header('retry-after', String(unavailableRetryAfterSeconds));
      }
      return reply.code(new PortcullisError(code).status).header('cache-control', 'no-store').send(errorBody(code));
    },
  }, async (request, reply) => {
    const caller = callers.get(request);
    if (!caller) {
      throw new Error('publish handler ran without a checked caller');
    }

    const { channel, data } = readPublishRequest(request.body);
    caller.channel = channel;
    if (!mayPublish(caller.permissions, parseChannelName(channel)!)) {
      throw new PortcullisError('forbidden');
    }

    const message: ChannelMessage = {
      channel,
      data,
      publisher: { client_id: caller.verified.clientId, sub: caller.verified.sub },
      timestamp: Date.now(),
    };
    const delivered = context.broker.publish(message);
    context.logger.info({ event: 'channel.published', client_id: message.publisher.client_id, channel, delivered }, 'message published through the API');
    return reply.code(202).header('cache-control', 'no-store').send({ channel, delivered });
  });
}
