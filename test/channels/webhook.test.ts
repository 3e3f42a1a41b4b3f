// Tests the webhook dispatcher against a real HTTP receiver on 127.0.0.1: signatures, retries, the
// queue bound and stop. The last test starts a server that sends a WebSocket client's message there.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import v8 from 'node:v8';
import vm from 'node:vm';

import type { ChannelMessage } from '../../src/channels/broker.ts';
import { WebhookDispatcher, type WebhookDispatcherOptions } from '../../src/channels/webhook.ts';
import { loadWebhookSecret, signWebhookBody, verifyWebhookSignature, webhookHeaders } from '../../src/channels/webhook-signature.ts';
import { OptionsError } from '../../src/config/options.ts';
import { createLogger } from '../../src/log/logger.ts';
import { captureLogLines, rememberSecret } from '../support/capture.ts';
import { addDevice, deviceToken, startTestServer, temporaryDataDir } from '../support/server.ts';
import { openDeviceSocket } from '../support/websocket.ts';

const secret = 'test-secret-0123456789abcdef0123456789abcdef';
rememberSecret(secret);

/** One request the receiver got, with the status it returned (0 while the response is pending). */
interface ReceivedRequest {
  headers: http.IncomingHttpHeaders;
  body: string;
  status: number;
}

/** A local webhook receiver that responds with scripted statuses, then 200. */
interface Receiver {
  url: string;
  requests: ReceivedRequest[];
  /** Resolves once `count` requests have arrived. */
  received(count: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts a receiver on 127.0.0.1. `respond` returns the status for the n-th request (0-based). A
 * returned promise delays the response until it resolves.
 */
async function startReceiver(respond: (index: number) => number | Promise<number> = () => 200): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const received: ReceivedRequest = { headers: request.headers, body: Buffer.concat(chunks).toString('utf8'), status: 0 };
      const status = respond(requests.length);
      requests.push(received);
      waiters.filter((waiter) => requests.length >= waiter.count).forEach((waiter) => waiter.resolve());
      void Promise.resolve(status).then((value) => {
        received.status = value;
        response.writeHead(value).end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    requests,
    received: (count) => requests.length >= count ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve })),
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function captureLogger(): { logger: ReturnType<typeof createLogger>; lines: () => Array<Record<string, unknown>> } {
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      const lines = chunk.toString('utf8').split('\n').filter(Boolean);
      raw.push(...lines);
      captureLogLines('webhook test', lines);
      callback();
    },
  });
  return { logger: createLogger('debug', sink), lines: () => raw.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

function message(channel: string, data: unknown = { n: 1 }): ChannelMessage {
  return { channel, data, publisher: { client_id: 'meter-1', sub: 'meter-1' }, timestamp: 1_700_000_000_000 };
}

function createDispatcher(url: string, overrides: Partial<WebhookDispatcherOptions> = {}) {
  const { logger, lines } = captureLogger();
  const dispatcher = new WebhookDispatcher({ url, secret, logger, retryBaseMs: 10, retryCapMs: 50, attemptTimeoutMs: 5000, ...overrides });
  return { dispatcher, lines };
}

function assertSigned(request: ReceivedRequest): void {
  assert.equal(verifyWebhookSignature({
    secret,
    timestamp: request.headers[webhookHeaders.timestamp] as string,
    body: request.body,
    signature: request.headers[webhookHeaders.signature] as string,
  }), true, 'the signature verifies');
}

describe('retries', () => {
  test('500 twice then 200 delivers once', async () => {
    const receiver = await startReceiver((index) => index < 2 ? 500 : 200);
    const { dispatcher, lines } = createDispatcher(receiver.url);
    try {
      dispatcher.enqueue(message('devices/meter-1/telemetry', { watts: 412 }));
      await dispatcher.idle();

      assert.equal(receiver.requests.length, 3);
      assert.equal(receiver.requests.filter((request) => request.status === 200).length, 1);
      const ids = new Set(receiver.requests.map((request) => request.headers[webhookHeaders.delivery]));
      assert.equal(ids.size, 1, 'every attempt carries the same delivery id');
      assert.match([...ids][0] as string, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      receiver.requests.forEach(assertSigned);
      assert.deepEqual(JSON.parse(receiver.requests[2].body), {
        channel: 'devices/meter-1/telemetry',
        data: { watts: 412 },
        publisher: { client_id: 'meter-1', sub: 'meter-1' },
        timestamp: 1_700_000_000_000,
      });
      assert.equal(receiver.requests[2].headers['content-type'], 'application/json');
      const delivered = lines().find((line) => line.event === 'webhook.delivered');
      assert.equal(delivered?.attempts, 3);
    } finally {
      await dispatcher.stop();
      await receiver.close();
    }
  });

  const cases: Array<[string, number[], number, string]> = [
    ['429 is retried', [429, 200], 2, 'webhook.delivered'],
    ['503 until the last attempt', [503, 503, 503], 3, 'webhook.failed'],
    ['400 is not retried', [400], 1, 'webhook.failed'],
    ['404 is not retried', [404], 1, 'webhook.failed'],
    ['redirect is not followed', [307], 1, 'webhook.failed'],
  ];
  for (const [name, statuses, attempts, event] of cases) {
    test(name, async () => {
      const receiver = await startReceiver((index) => statuses[index] ?? 200);
      const { dispatcher, lines } = createDispatcher(receiver.url, { maxAttempts: 3 });
      try {
        dispatcher.enqueue(message('devices/meter-1/telemetry'));
        await dispatcher.idle();

        assert.equal(receiver.requests.length, attempts);
        assert.ok(lines().some((line) => line.event === event), `a ${event} line was written`);
      } finally {
        await dispatcher.stop();
        await receiver.close();
      }
    });
  }

  test('connection refused is retried', async () => {
    const receiver = await startReceiver();
    const url = receiver.url;
    await receiver.close();
    const { dispatcher, lines } = createDispatcher(url, { maxAttempts: 2 });
    try {
      dispatcher.enqueue(message('devices/meter-1/telemetry'));
      await dispatcher.idle();

      const retry = lines().find((line) => line.event === 'webhook.retry_scheduled');
      const failed = lines().find((line) => line.event === 'webhook.failed');
      assert.equal(retry?.error, 'ECONNREFUSED');
      assert.equal(failed?.attempts, 2);
    } finally {
      await dispatcher.stop();
    }
  });

  test('attempt timeout is retried', async () => {
    const receiver = await startReceiver((index) => index === 0 ? new Promise<number>(() => {}) : 200);
    const { dispatcher, lines } = createDispatcher(receiver.url, { attemptTimeoutMs: 200 });
    try {
      dispatcher.enqueue(message('devices/meter-1/telemetry'));
      await dispatcher.idle();

      assert.equal(receiver.requests.length, 2);
      assert.equal(lines().find((line) => line.event === 'webhook.retry_scheduled')?.error, 'TimeoutError');
      assert.equal(lines().find((line) => line.event === 'webhook.delivered')?.attempts, 2);
    } finally {
      await dispatcher.stop();
      await receiver.close();
    }
  });
});

test('attempt timeout survives garbage collection', async () => {
  // A timeout signal that nothing references may be collected while the request waits; then the
  // attempt never ends. Collecting garbage during the attempt must not stop the timeout.
  v8.setFlagsFromString('--expose-gc');
  const collectGarbage = vm.runInNewContext('gc') as () => void;
  const receiver = await startReceiver((index) => index === 0 ? new Promise<number>(() => {}) : 200);
  const { dispatcher, lines } = createDispatcher(receiver.url, { attemptTimeoutMs: 500 });
  try {
    dispatcher.enqueue(message('devices/meter-1/telemetry'));
    await receiver.received(1);
    collectGarbage();
    const neverTimedOut = delay(10_000, 'the attempt never timed out', { ref: false });
    assert.equal(await Promise.race([dispatcher.idle().then(() => 'idle'), neverTimedOut]), 'idle');

    assert.equal(receiver.requests.length, 2);
    assert.equal(lines().find((line) => line.event === 'webhook.retry_scheduled')?.error, 'TimeoutError');
  } finally {
    await dispatcher.stop();
    await receiver.close();
  }
});

describe('queue and stop', () => {
  test('full queue drops the oldest', async () => {
    let release!: (status: number) => void;
    const firstStatus = new Promise<number>((resolve) => { release = resolve; });
    // The first response waits for release(), so the later messages wait in the queue of two.
    const receiver = await startReceiver((index) => index === 0 ? firstStatus : 200);
    const { dispatcher, lines } = createDispatcher(receiver.url, { concurrency: 1, maxQueuedMessages: 2 });
    try {
      for (const name of ['one', 'two', 'three', 'four']) {
        dispatcher.enqueue(message(`queue/${name}`));
      }
      assert.equal(dispatcher.inFlight, 1);
      assert.equal(dispatcher.queued, 2);
      await receiver.received(1);
      release(200);
      await dispatcher.idle();

      const channels = receiver.requests.map((request) => JSON.parse(request.body).channel as string);
      assert.deepEqual(channels, ['queue/one', 'queue/three', 'queue/four']);
      assert.equal(lines().find((line) => line.event === 'webhook.dropped')?.dropped, 1);
      assert.equal(lines().some((line) => JSON.stringify(line).includes('"n":1')), false, 'no message data in the log');
    } finally {
      await dispatcher.stop();
      await receiver.close();
    }
  });

  test('stopped dispatcher sends nothing more', async () => {
    const receiver = await startReceiver(() => 500);
    const { dispatcher, lines } = createDispatcher(receiver.url, { maxAttempts: 5 });
    try {
      dispatcher.enqueue(message('devices/meter-1/telemetry'));
      await receiver.received(1);
      await dispatcher.stop();
      const countAtStop = receiver.requests.length;
      dispatcher.enqueue(message('devices/meter-1/late'));

      assert.equal(dispatcher.queued, 0);
      assert.equal(dispatcher.inFlight, 0);
      // The remaining retry delays add up to at most 4 x 50 ms, so 500 ms is time enough for a stray request.
      await delay(500);
      assert.equal(receiver.requests.length, countAtStop);
      assert.equal(receiver.requests.some((request) => request.body.includes('late')), false);
      assert.equal(lines().find((line) => line.event === 'webhook.stopped')?.undelivered, 1);
    } finally {
      await receiver.close();
    }
  });
});

describe('signature', () => {
  const body = '{"channel":"a","data":1}';
  const now = 1_800_000_000;
  const valid = signWebhookBody(secret, now, body);

  const cases: Array<[string, Partial<Parameters<typeof verifyWebhookSignature>[0]>, boolean]> = [
    ['valid', {}, true],
    ['valid among several', { signature: `v1=${'0'.repeat(64)}, ${valid}` }, true],
    ['raw body as Buffer', { body: Buffer.from(body) }, true],
    ['edge of the window', { nowSeconds: now + 300 }, true],
    ['tampered body', { body: body.replace('1', '2') }, false],
    ['other secret', { secret: `${secret}x` }, false],
    ['stale timestamp', { nowSeconds: now + 301 }, false],
    ['future timestamp', { nowSeconds: now - 301 }, false],
    ['timestamp changed', { timestamp: String(now + 1) }, false],
    ['missing signature', { signature: undefined }, false],
    ['missing timestamp', { timestamp: undefined }, false],
    ['non-numeric timestamp', { timestamp: '1e9' }, false],
    ['other version', { signature: valid.replace('v1=', 'v0=') }, false],
    ['short hex', { signature: valid.slice(0, -2) }, false],
  ];
  for (const [name, override, expected] of cases) {
    test(`verify: ${name}`, () => {
      assert.equal(verifyWebhookSignature({ secret, timestamp: String(now), body, signature: valid, nowSeconds: now, ...override }), expected);
    });
  }
});

describe('secret', () => {
  test('generated once with mode 0600', () => {
    const dataDir = temporaryDataDir();
    const { logger, lines } = captureLogger();

    const first = loadWebhookSecret({ dataDir, webhookSecretFile: null }, logger);
    const second = loadWebhookSecret({ dataDir, webhookSecretFile: null }, logger);

    const file = path.join(dataDir, 'webhook-secret');
    assert.match(first, /^[0-9a-f]{64}$/);
    assert.equal(second, first);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(lines().filter((line) => line.event === 'webhook.secret_created').length, 1);
    assert.equal(lines().some((line) => JSON.stringify(line).includes(first)), false, 'the secret is not logged');
  });

  test('secret file is trimmed', () => {
    const file = path.join(temporaryDataDir(), 'secret');
    fs.writeFileSync(file, `  ${secret}\n\n`);

    assert.equal(loadWebhookSecret({ dataDir: temporaryDataDir(), webhookSecretFile: file }, captureLogger().logger), secret);
  });

  test('short or missing secret file fails', () => {
    const file = path.join(temporaryDataDir(), 'short');
    fs.writeFileSync(file, 'too-short\n');
    const { logger } = captureLogger();

    assert.throws(() => loadWebhookSecret({ dataDir: temporaryDataDir(), webhookSecretFile: file }, logger), OptionsError);
    assert.throws(() => loadWebhookSecret({ dataDir: temporaryDataDir(), webhookSecretFile: `${file}-missing` }, logger), OptionsError);
  });
});

describe('server', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) {
      await cleanup();
    }
  });

  test('sends a WebSocket publish to the webhook', async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const server = await startTestServer({ webhookUrl: receiver.url });
    cleanups.push(() => server.close());
    const device = await addDevice(server, 'meter-1');
    const socket = await openDeviceSocket(server, { clientId: 'meter-1', accessToken: await deviceToken(server, device) });
    cleanups.push(() => socket.close());

    socket.send({ type: 'publish', id: 1, channel: 'devices/meter-1/telemetry', data: { watts: 7 } });
    assert.equal((await socket.nextFrame()).type, 'published');
    await receiver.received(1);

    const serverSecret = fs.readFileSync(path.join(server.dataDir, 'webhook-secret'), 'utf8').trim();
    const [request] = receiver.requests;
    assert.equal(verifyWebhookSignature({
      secret: serverSecret,
      timestamp: request.headers[webhookHeaders.timestamp] as string,
      body: request.body,
      signature: request.headers[webhookHeaders.signature] as string,
    }), true);
    const payload = JSON.parse(request.body);
    assert.equal(payload.channel, 'devices/meter-1/telemetry');
    assert.deepEqual(payload.data, { watts: 7 });
    assert.deepEqual(payload.publisher, { client_id: 'meter-1', sub: 'meter-1' });
    assert.equal(typeof payload.timestamp, 'number');
    assert.equal(server.logs.some((line) => line.includes(serverSecret)), false, 'the secret is not logged');
  });
});
