import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Redis } from 'ioredis';

import { freePort } from './server.ts';

/** The Redis that the machine and CI run; every cluster test but the outage test uses it. */
export const sharedRedisUrl = 'redis://127.0.0.1:6379';

/** Maximum wait for a Redis server to start or stop, in milliseconds. It only stops a hung test. */
const redisWaitMs = 15_000;

/** Returns a key prefix no other test file uses, e.g. `portcullis-test:bridge:1a2b3c4d:`. */
export function uniqueKeyPrefix(name: string): string {
  return `portcullis-test:${name}:${crypto.randomBytes(4).toString('hex')}:`;
}

/** Deletes every key under `prefix`, so that a test leaves nothing behind in the shared Redis. */
export async function deleteKeys(url: string, prefix: string): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) {
        await client.del(...keys);
      }
      cursor = next;
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
}

/**
 * A `redis-server` of this test alone on a free loopback port, with a password, no persistence and
 * its own working directory. `stop` and `start` simulate an outage; the port stays the same.
 */
export class ThrowawayRedisServer {
  readonly port: number;
  readonly password: string;
  private readonly directory: string;
  private child: ChildProcess | null = null;

  private constructor(port: number, password: string) {
    this.port = port;
    this.password = password;
    this.directory = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-redis-'));
  }

  /** Starts a server with `password` on a port that was free a moment ago. */
  static async start(password: string): Promise<ThrowawayRedisServer> {
    const server = new ThrowawayRedisServer(await freePort(), password);
    await server.start();
    return server;
  }

  /** The URL with the password, as an operator would configure it. */
  get url(): string {
    return `redis://:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}`;
  }

  /** Starts `redis-server` and resolves once it accepts connections. */
  async start(): Promise<void> {
    const child = spawn('redis-server', [
      '--port', String(this.port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', this.directory,
      '--requirepass', this.password,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;

    await new Promise<void>((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => finish(new Error(`redis-server did not start within ${redisWaitMs} ms: ${output}`)), redisWaitMs);
      const finish = (error?: Error) => {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.off('exit', onExit);
        if (error) {
          reject(error);
        } else {
          resolve();
        }
      };
      const onData = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        if (output.includes('Ready to accept connections')) {
          finish();
        }
      };
      const onExit = (code: number | null) => finish(new Error(`redis-server exited with ${code} before it was ready: ${output}`));
      child.stdout!.on('data', onData);
      child.once('exit', onExit);
    });
    // Keeps reading, so that a full pipe never blocks the server.
    child.stdout!.resume();
    child.stderr!.resume();
  }

  /** Stops the server with SIGTERM and resolves once the process has exited. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) {
      return;
    }

    this.child = null;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`redis-server did not stop within ${redisWaitMs} ms`)), redisWaitMs);
    });
    await Promise.race([exited, timeout]).finally(() => clearTimeout(timer));
  }

  /** Stops the server and removes its working directory. */
  async destroy(): Promise<void> {
    await this.stop();
    fs.rmSync(this.directory, { recursive: true, force: true });
  }
}
