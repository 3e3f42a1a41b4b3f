import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import type { Logger } from 'pino';

import type { SigningKeyRing } from '../auth/key-ring.ts';
import type { ConnectionRegistry } from './registry.ts';

/** Returns the path of the admin socket in a data directory. */
export function adminSocketPath(dataDir: string): string {
  return path.join(dataDir, 'admin.sock');
}

/**
 * Serves operator requests (`GET /connections`, `POST /keys/reload`) on a Unix socket in the data directory.
 * The socket file is mode 0600 inside a 0700 directory, so only the server's own user can connect;
 * nothing listens on the network for this.
 */
/** Objects the admin socket exposes. */
export interface AdminTargets {
  registry: ConnectionRegistry;
  keyRing: SigningKeyRing;
}

export async function startAdminSocket(dataDir: string, targets: AdminTargets, logger: Logger): Promise<http.Server | null> {
  const socketPath = adminSocketPath(dataDir);
  // Unix socket paths are limited to about 107 bytes on Linux.
  if (Buffer.byteLength(socketPath) > 100) {
    logger.warn({ event: 'admin_socket.disabled', path_bytes: Buffer.byteLength(socketPath) }, 'data directory path too long for the admin socket; "portcullis sessions list" is unavailable');
    return null;
  }
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

/**
 * Sends one request to a running server's admin socket and returns the parsed JSON body, or null
 * when no server runs on this data directory.
 */
export async function adminRequest(dataDir: string, method: 'GET' | 'POST', requestPath: string): Promise<unknown> {
  const socketPath = adminSocketPath(dataDir);
  if (!fs.existsSync(socketPath)) {
    return null;
  }

  return new Promise((resolve, reject) => {
    const request = http.request({ socketPath, method, path: requestPath, timeout: 5000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
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
    request.end();
  });
}

/** Fetches the live connections from a running server; null when no server runs. */
export async function fetchLiveConnections(dataDir: string): Promise<unknown[] | null> {
  const body = await adminRequest(dataDir, 'GET', '/connections') as { connections?: unknown[] } | null;
  return body?.connections ?? null;
}
