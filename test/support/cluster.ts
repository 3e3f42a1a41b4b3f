import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import type { Options } from '../../src/config/options.ts';
import { startTestServer, temporaryDataDir, type TestServer } from './server.ts';
import { socketWaitMs } from './websocket.ts';

/** Two nodes of one deployment: one database, one public URL, one Redis key prefix. */
export interface NodePair {
  a: TestServer;
  b: TestServer;
  /** Stops both nodes. */
  close(): Promise<void>;
}

/**
 * Returns the origin of one node's own listener. A node's `url` is the deployment's public URL, which
 * for node B is node A's listener, so requests meant for B (such as `/readyz`) go here instead.
 */
export function nodeOrigin(node: TestServer): string {
  return `https://localhost:${node.port}`;
}

/**
 * Starts node A, then node B with its own data directory whose `portcullis.db` is a symbolic link to
 * A's database. The nodes cannot share one data directory, because each opens the admin socket
 * `<dataDir>/admin.sock` and the second start fails on the first's live socket. SQLite resolves the
 * link, so both use one database file with one WAL: the same signing keys, secrets, devices, users
 * and revocation events, as nodes sharing a database server would. B takes A's public URL, so tokens
 * that one node issues verify on the other. Each node keeps its own development CA and certificate.
 */
export async function startNodePair(overrides: Partial<Options> & { logs?: string[] } = {}): Promise<NodePair> {
  const a = await startTestServer(overrides);
  const dataDirB = temporaryDataDir();
  fs.symlinkSync(path.join(a.dataDir, 'portcullis.db'), path.join(dataDirB, 'portcullis.db'));
  const b = await startTestServer({ ...overrides, logs: [], dataDir: dataDirB, publicUrl: a.url });

  return {
    a,
    b,
    async close() {
      await b.close();
      await a.close();
    },
  };
}

/** Reads `GET /readyz` of one node. */
export async function readiness(node: TestServer): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await node.fetch(`${nodeOrigin(node)}/readyz`);
  return { status: response.status, body: await response.json() as Record<string, unknown> };
}

/**
 * Polls `/readyz` of `node` until its `status` field is `expected` and returns that body. Rejects
 * after `socketWaitMs`, naming the last body received.
 */
export async function waitForReadiness(node: TestServer, expected: 'ready' | 'degraded'): Promise<Record<string, unknown>> {
  const pollMs = 50;
  let last: unknown = null;
  for (let waited = 0; waited < socketWaitMs; waited += pollMs) {
    const { body } = await readiness(node);
    if (body.status === expected) {
      return body;
    }
    last = body;
    await delay(pollMs);
  }
  throw new Error(`/readyz of ${nodeOrigin(node)} was not ${expected} within ${socketWaitMs} ms; last answer ${JSON.stringify(last)}`);
}

/** Returns the parsed log lines of `node` whose `event` is `event`. */
export function logEvents(node: TestServer, event: string): Record<string, unknown>[] {
  return node.logs
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((entry) => entry.event === event);
}

/** Polls the logs of `node` until a line with `event` satisfies `matches`, and returns it. Rejects after `socketWaitMs`. */
export async function waitForLogEvent(node: TestServer, event: string, matches: (entry: Record<string, unknown>) => boolean = () => true): Promise<Record<string, unknown>> {
  const pollMs = 20;
  for (let waited = 0; waited < socketWaitMs; waited += pollMs) {
    const found = logEvents(node, event).find(matches);
    if (found) {
      return found;
    }
    await delay(pollMs);
  }
  throw new Error(`${nodeOrigin(node)} logged no matching ${event} within ${socketWaitMs} ms`);
}
