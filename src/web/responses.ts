import * as oauth from 'openid-client';
import type { FastifyReply } from 'fastify';

import { errorBody, PortcullisError, type ErrorCode } from '../errors.ts';

/** Sends a catalogue error as JSON with `Cache-Control: no-store`. */
export function sendError(reply: FastifyReply, code: ErrorCode): FastifyReply {
  const error = new PortcullisError(code);
  return reply.code(error.status).header('cache-control', 'no-store').send(errorBody(code));
}

/**
 * Tells whether an openid-client error carries the auth server's `temporarily_unavailable`, which it
 * returns while the database cannot be reached, from the token endpoint or in an authorization
 * response.
 */
export function isUnavailableResponse(error: unknown): boolean {
  const isOauthError = error instanceof oauth.ResponseBodyError || error instanceof oauth.AuthorizationResponseError;
  return isOauthError && error.error === 'temporarily_unavailable';
}

// openid-client errors may carry the response body; only the code and name are safe to log.
export function summarizeOauthError(error: unknown): Record<string, unknown> {
  if (error instanceof oauth.ResponseBodyError) {
    return { type: error.name, code: error.error, status: error.status };
  }
  if (error instanceof Error) {
    return { type: error.name, code: (error as Error & { code?: string }).code, message: error.message };
  }
  return { type: typeof error };
}
