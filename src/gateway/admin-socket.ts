import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import type { Logger } from 'pino';

import type { ConnectionRegistry } from './registry.ts';

/** Returns the path of the admin socket in a data directory. */
export function adminSocketPath(dataDir: string): string {
  return path.join(dataDir, 'admin.sock');
}

/**
 * Serves read-only operator queries (`GET /connections`) on a Unix socket in the data directory.
 * The socket file is mode 0600 inside a 0700 directory, so only the server's own user can connect;
 * nothing listens on the network for this.
 */
export async function startAdminSocket(dataDir: string, registry: ConnectionRegistry, logger: Logger): Promise<http.Server | null> {
  const socketPath = adminSocketPath(dataDir);
  // Unix socket paths are limited to about 107 bytes on Linux.
  if (Buffer.byteLength(socketPath) > 100) {
    logger.warn({ event: 'admin_socket.disabled', path_bytes: Buffer.byteLength(socketPath) }, 'data directory path too long for the admin socket; "portcullis sessions list" is unavailable');
    return null;
  }
  const server = http.createServer((request, response) => {
    if (request.method === 'GET' && request.url === '/connections') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ connections: registry.summaries() }));
      return;
    }
    response.writeHead(404, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ error: 'not_found', error_description: 'No such resource.' }));
  });

  // A socket file left by a server that crashed would make listen fail with EADDRINUSE.
  await removeStaleSocket(socketPath);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
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
    throw new Error(`another Portcullis server is running on this data directory (${socketPath} answers); stop it or use another --data-dir`);
  }
  fs.rmSync(socketPath, { force: true });
}

/** Fetches the live connections from a running server's admin socket; null when no server runs. */
export async function fetchLiveConnections(dataDir: string): Promise<unknown[] | null> {
  const socketPath = adminSocketPath(dataDir);
  if (!fs.existsSync(socketPath)) {
    return null;
  }

  return new Promise((resolve, reject) => {
    const request = http.get({ socketPath, path: '/connections', timeout: 5000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        try {
          resolve((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { connections: unknown[] }).connections);
        } catch (error) {
          reject(error);
        }
      });
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT') {
        resolve(null);
        return;
      }
      reject(error);
    });
    request.on('timeout', () => request.destroy(new Error(`the server did not respond on ${socketPath} within 5 s`)));
  });
}
