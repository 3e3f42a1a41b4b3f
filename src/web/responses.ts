import * as oauth from 'openid-client';
import type { FastifyReply } from 'fastify';

import { errorBody, PortcullisError, type ErrorCode } from '../errors.ts';

/** Sends a catalogue error as JSON with `Cache-Control: no-store`. */
export function sendError(reply: FastifyReply, code: ErrorCode): FastifyReply {
  const error = new PortcullisError(code);
  return reply.code(error.status).header('cache-control', 'no-store').send(errorBody(code));
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
