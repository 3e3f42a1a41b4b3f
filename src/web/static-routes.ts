import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { FastifyInstance } from 'fastify';

import { bundleBrowserClient } from '../client/bundle.ts';

const publicDirectory = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../public');

const staticFiles: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/static/demo.js': { file: 'demo.js', type: 'text/javascript; charset=utf-8' },
  '/static/portcullis.css': { file: 'portcullis.css', type: 'text/css; charset=utf-8' },
};

/** Registers the demo page, its assets and the bundled browser SDK, all built or read once at start. */
export async function registerStaticRoutes(app: FastifyInstance): Promise<void> {
  const clientBundle = await bundleBrowserClient();
  app.get('/static/portcullis-client.js', async (_request, reply) => reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(clientBundle));

  for (const [route, { file, type }] of Object.entries(staticFiles)) {
    const content = fs.readFileSync(path.join(publicDirectory, file));
    app.get(route, async (_request, reply) => reply.type(type).header('cache-control', 'no-cache').send(content));
  }
}
