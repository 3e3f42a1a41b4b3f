import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import type { Logger } from 'pino';

import type { SigningKeyRing } from '../auth/key-ring.ts';
import type { ChannelBroker } from '../channels/broker.ts';
import { operatorPublisher, publishAsOperator } from '../channels/publish.ts';
import { errorBody, PortcullisError, type ErrorCode } from '../errors.ts';
import { readPublishRequest } from '../web/publish-route.ts';
import type { ConnectionRegistry } from './registry.ts';
import type { RevocationNotice } from './revocations.ts';

/** Returns the path of the admin socket in a data directory. */
export function adminSocketPath(dataDir: string): string {
  return path.join(dataDir, 'admin.sock');
}

/** Objects the admin socket exposes. */
export interface AdminTargets {
  registry: ConnectionRegistry;
  keyRing: SigningKeyRing;
  broker: ChannelBroker;
  /** Largest accepted `POST /publish` body in bytes, the same limit as a WebSocket message. */
  maxPayloadBytes: number;
  /** Closes this node's connections that a revocation covers and announces it to the other nodes through Redis. */
  announceRevocation: (revocation: RevocationNotice) => void;
}

const revocationKinds = new Set(['grant', 'client', 'user', 'token']);
const maxRevocationBodyBytes = 4096;

/** Result of one admin request: the HTTP status and the parsed JSON body. */
export interface AdminResponse {
  status: number;
  body: unknown;
}

/**
 * Serves operator requests (`GET /connections`, `POST /keys/reload`, `POST /publish`,
 * `POST /revocations`) on a Unix
 * socket in the data directory. The socket file is mode 0600 inside a 0700 directory, so only the
 * server's own user can connect; nothing listens on the network for this.
 */
export async function startAdminSocket(dataDir: string, targets: AdminTargets, logger: Logger): Promise<http.Server | null> {
  const socketPath = adminSocketPath(dataDir);
  // Unix socket paths are limited to about 107 bytes on Linux.
  if (Buffer.byteLength(socketPath) > 100) {
    logger.warn({ event: 'admin_socket.disabled', path_bytes: Buffer.byteLength(socketPath) }, 'data directory path too long for the admin socket; "portcullis sessions list" is unavailable');
    return null;
  }
  const handlePublish = createPublishHandler(targets, logger);
  const server = http.createServer((request, response) => {
    if (request.method === 'GET' && request.url === '/connections') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ connections: targets.registry.summaries() }));
      return;
    }
    if (request.method === 'POST' && request.url === '/keys/reload') {
      targets.keyRing.reload().then((changed) => {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ changed }));
      }, (error: unknown) => {
        logger.error({ event: 'key.reload_failed', err: error }, 'reloading signing keys failed');
        response.writeHead(500, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ error: 'server_error', error_description: 'An internal error occurred.' }));
      });
      return;
    }
    if (request.method === 'POST' && request.url === '/publish') {
      handlePublish(request, response);
      return;
    }
    if (request.method === 'POST' && request.url === '/revocations') {
      handleRevocation(request, response, targets);
      return;
    }
    response.writeHead(404, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ error: 'not_found', error_description: 'No such resource.' }));
  });

  // A socket file left by a server that crashed would make listen fail with EADDRINUSE.
  await removeStaleSocket(socketPath);
  // The socket file is created with the process umask; a strict one closes the window before chmod.
  const previousUmask = process.umask(0o077);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(previousUmask);
  }
  fs.chmodSync(socketPath, 0o600);
  server.on('error', (error) => logger.error({ event: 'admin_socket.error', err: error }, 'admin socket error'));
  return server;
}

function sendJson(response: http.ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

function sendAdminError(response: http.ServerResponse, code: ErrorCode): void {
  sendJson(response, new PortcullisError(code).status, errorBody(code));
}

/** Creates the `POST /publish` handler, which publishes `{channel, data}` as the operator with the body limited to `maxPayloadBytes`. */
function createPublishHandler(targets: AdminTargets, logger: Logger): (request: http.IncomingMessage, response: http.ServerResponse) => void {
  return (request, response) => {
    if (request.headers['content-type']?.split(';')[0].trim().toLowerCase() !== 'application/json') {
      request.resume();
      sendAdminError(response, 'unsupported_media_type');
      return;
    }

    const chunks: Buffer[] = [];
    let received = 0;
    request.on('data', (chunk: Buffer) => {
      received += chunk.length;
      // Bytes past the limit are read and discarded, so memory stays bounded and the client still gets the 413.
      if (received <= targets.maxPayloadBytes) {
        chunks.push(chunk);
      }
    });
    request.on('end', () => {
      if (received > targets.maxPayloadBytes) {
        sendAdminError(response, 'payload_too_large');
        return;
      }

      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        sendAdminError(response, 'invalid_request');
        return;
      }

      try {
        const { channel, data } = readPublishRequest(body);
        const delivered = publishAsOperator(targets.broker, channel, data);
        logger.info({ event: 'channel.published', client_id: operatorPublisher.client_id, channel, delivered }, 'message published by the operator');
        sendJson(response, 200, { channel, delivered });
      } catch (error) {
        if (!(error instanceof PortcullisError)) {
          logger.error({ event: 'admin_socket.publish_failed', err: error }, 'publishing through the admin socket failed');
          sendAdminError(response, 'server_error');
          return;
        }
        sendAdminError(response, error.code);
      }
    });
  };
}

/**
 * Handles `POST /revocations` with `{kind, value, reason}`: a management command has recorded the
 * revocation in the database, and this makes it take effect on every node at once instead of at
 * their next database poll.
 */
function handleRevocation(request: http.IncomingMessage, response: http.ServerResponse, targets: AdminTargets): void {
  const chunks: Buffer[] = [];
  let received = 0;
  request.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received <= maxRevocationBodyBytes) {
      chunks.push(chunk);
    }
  });
  request.on('end', () => {
    let body: Record<string, unknown>;
    try {
      body = received > maxRevocationBodyBytes ? {} : JSON.parse(Buffer.concat(chunks).toString('utf8')) ?? {};
    } catch {
      body = {};
    }

    const { kind, value, reason } = body;
    if (typeof kind !== 'string' || !revocationKinds.has(kind) || typeof value !== 'string' || value === '' || typeof reason !== 'string') {
      sendAdminError(response, 'invalid_request');
      return;
    }
    targets.announceRevocation({ kind: kind as RevocationNotice['kind'], value, reason });
    sendJson(response, 200, { announced: true });
  });
}

async function removeStaleSocket(socketPath: string): Promise<void> {
  if (!fs.existsSync(socketPath)) {
    return;
  }

  const live = await new Promise<boolean>((resolve) => {
    const probe = http.get({ socketPath, path: '/connections', timeout: 1000 }, (response) => {
      response.resume();
      resolve(true);
    });
    probe.on('error', () => resolve(false));
    probe.on('timeout', () => {
      probe.destroy();
      resolve(false);
    });
  });
  if (live) {
    throw new Error(`another Portcullis server is running on this data directory (${socketPath} accepts connections); stop it or use another --data-dir`);
  }
  fs.rmSync(socketPath, { force: true });
}

/** One request to the admin socket, with an optional `body` sent as JSON. */
interface AdminRequest {
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
}

/**
 * Sends one request to a running server's admin socket and returns its status and parsed JSON body,
 * or null when no server runs on this data directory.
 */
async function sendAdminRequest(dataDir: string, adminRequest: AdminRequest): Promise<AdminResponse | null> {
  const socketPath = adminSocketPath(dataDir);
  if (!fs.existsSync(socketPath)) {
    return null;
  }

  const payload = adminRequest.body === undefined ? undefined : JSON.stringify(adminRequest.body);
  const headers = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
  return new Promise((resolve, reject) => {
    const request = http.request({ socketPath, method: adminRequest.method, path: adminRequest.path, headers, timeout: 5000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        try {
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        } catch (error) {
          reject(error);
        }
      });
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      // A socket file without a listener is left over from a server that stopped.
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT') {
        resolve(null);
        return;
      }
      reject(error);
    });
    request.on('timeout', () => request.destroy(new Error(`the server did not respond on ${socketPath} within 5 s`)));
    request.end(payload);
  });
}

/**
 * Sends one request to a running server's admin socket and returns the parsed JSON body, or null
 * when no server runs on this data directory.
 */
export async function adminRequest(dataDir: string, method: 'GET' | 'POST', requestPath: string): Promise<unknown> {
  const response = await sendAdminRequest(dataDir, { method, path: requestPath });
  return response?.body ?? null;
}

/** Asks a running server to publish `data` on `channel` as the operator, and returns null when no server runs. */
export async function publishThroughAdminSocket(dataDir: string, message: { channel: string; data: unknown }): Promise<AdminResponse | null> {
  return sendAdminRequest(dataDir, { method: 'POST', path: '/publish', body: { channel: message.channel, data: message.data } });
}

/**
 * Asks a running server to apply a revocation that was just recorded and to announce it to the other
 * nodes. Returns false when no server runs on this data directory; the nodes then read it from the
 * database within a second.
 */
export async function announceThroughAdminSocket(dataDir: string, revocation: RevocationNotice): Promise<boolean> {
  const response = await sendAdminRequest(dataDir, { method: 'POST', path: '/revocations', body: { kind: revocation.kind, value: revocation.value, reason: revocation.reason } })
    .catch(() => null);
  return response?.status === 200;
}

/** Fetches the live connections from a running server; null when no server runs. */
export async function fetchLiveConnections(dataDir: string): Promise<unknown[] | null> {
  const body = await adminRequest(dataDir, 'GET', '/connections') as { connections?: unknown[] } | null;
  return body?.connections ?? null;
}
