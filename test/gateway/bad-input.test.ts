import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';

import SQLite from 'better-sqlite3';

import { rawHandshake } from '../support/raw-handshake.ts';
import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';

const deviceId = 'sturdy-device';

let server: TestServer;
let deviceAccessToken: string;
let serverClosed = false;

before(async () => {
  // A 1 s handshake timeout keeps the stalled-client tests short. Valid clients send their handshake at once.
  server = await startTestServer({ handshakeTimeoutMs: 1000 });
  deviceAccessToken = await deviceToken(server, await addDevice(server, deviceId));
});

after(async () => {
  if (!serverClosed) {
    await server.close();
  }
});

function deviceHandshake(extraHeaders: Record<string, string> = {}) {
  return rawHandshake({
    port: server.port,
    ca: server.caPem,
    headers: { Authorization: `Bearer ${deviceAccessToken}`, 'X-Client-Id': deviceId, ...extraHeaders },
  });
}

async function assertStillServing(): Promise<void> {
  const response = await deviceHandshake();
  assert.equal(response.status, 101, 'a valid device still connects');
}

/**
 * Opens a connection (TLS unless `plain`), writes `bytes` once connected and resolves with what the
 * server sent once the server closes the socket. The test never closes the socket itself, except
 * after 20 s, which fails the test.
 */
function sendUntilClosed(bytes: Buffer | string, options: { plain?: boolean } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = options.plain
      ? net.connect({ host: '127.0.0.1', port: server.port })
      : tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: server.caPem });
    let received = Buffer.alloc(0);
    const guard = setTimeout(() => {
      socket.destroy();
      reject(new Error('the server did not close the socket within 20 s'));
    }, 20_000);

    socket.once(options.plain ? 'connect' : 'secureConnect', () => {
      if (bytes.length > 0) {
        socket.write(bytes);
      }
    });
    socket.on('data', (chunk: Buffer) => { received = Buffer.concat([received, chunk]); });
    // A reset after the server's response is expected. The test checks what arrived before the close.
    socket.on('error', () => {});
    socket.once('close', () => {
      clearTimeout(guard);
      resolve(received);
    });
  });
}

function parseAnswer(raw: Buffer): { status: number; contentType: string; json: { error?: string } | null } {
  const text = raw.toString('utf8');
  const headerEnd = text.indexOf('\r\n\r\n');
  const head = headerEnd === -1 ? text : text.slice(0, headerEnd);
  const contentType = /\r\ncontent-type: *([^\r\n]*)/i.exec(head)?.[1] ?? '';

  let json = null;
  try {
    json = JSON.parse(text.slice(headerEnd + 4));
  } catch {
    json = null;
  }
  return { status: Number(head.split(' ')[1] ?? 0), contentType, json };
}

describe('oversized headers', () => {
  test('one 64 KiB cookie', async () => {
    const response = await deviceHandshake({ Cookie: `a=${'x'.repeat(64 * 1024)}` });

    assert.equal(response.status, 431);
    assert.match(response.headers['content-type'] ?? '', /^application\/json/);
    assert.equal(response.json?.error, 'headers_too_large');
    await assertStillServing();
  });

  test('3,000 small headers', async () => {
    const headers: Record<string, string> = {};
    for (let index = 0; index < 3000; index += 1) {
      headers[`X-Pad-${index}`] = 'a';
    }

    const response = await deviceHandshake(headers);

    assert.equal(response.status, 431);
    assert.equal(response.json?.error, 'headers_too_large');
    await assertStillServing();
  });

  test('8 KiB of headers is within the limit', async () => {
    const response = await deviceHandshake({ 'X-Pad': 'x'.repeat(8 * 1024) });

    assert.equal(response.status, 101);
  });
});

describe('junk on the TLS port', () => {
  const junk: Array<[string, () => Buffer]> = [
    ['plain-text HTTP', () => Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')],
    ['plain-text upgrade with a token', () => Buffer.from(`GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nAuthorization: Bearer ${deviceAccessToken}\r\n\r\n`)],
    ['random bytes', () => crypto.randomBytes(4096)],
  ];
  for (const [name, bytes] of junk) {
    test(name, async () => {
      const received = await sendUntilClosed(bytes(), { plain: true });

      assert.ok(!received.toString('latin1').startsWith('HTTP/'), 'no cleartext HTTP answer');
      await assertStillServing();
    });
  }
});

describe('stalled clients', () => {
  test('half a handshake is closed by the server', { timeout: 15_000 }, async () => {
    const received = await sendUntilClosed(`GET /ws HTTP/1.1\r\nHost: localhost:${server.port}\r\nUpgrade: websocket\r\n`);

    assert.ok(!received.toString('latin1').startsWith('HTTP/1.1 101'));
    await assertStillServing();
  });

  test('TLS without any request is closed by the server', { timeout: 15_000 }, async () => {
    const received = await sendUntilClosed('');

    assert.ok(!received.toString('latin1').startsWith('HTTP/1.1 101'));
    await assertStillServing();
  });

  test('TCP without a TLS hello is closed by the server', { timeout: 15_000 }, async () => {
    const received = await sendUntilClosed('', { plain: true });

    assert.equal(received.length, 0);
    await assertStillServing();
  });
});

describe('malformed requests', () => {
  const requests: Array<[string, string]> = [
    ['line without a colon', 'GET /ws HTTP/1.1\r\nHost: localhost\r\nBad Line Without Colon\r\n\r\n'],
    ['space in a header name', 'GET /ws HTTP/1.1\r\nHost: localhost\r\nX Bad: 1\r\n\r\n'],
    ['empty header name', 'GET /ws HTTP/1.1\r\nHost: localhost\r\n: value\r\n\r\n'],
    ['control byte in a value', 'GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Ctl: a\x01b\r\n\r\n'],
    ['folded header line', 'GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Fold: a\r\n folded\r\n\r\n'],
    ['bare LF line endings', 'GET /ws HTTP/1.1\nHost: localhost\n\n'],
    ['Content-Length with Transfer-Encoding', 'POST /logout HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['unknown HTTP version', 'GET /ws HTTP/9.9\r\nHost: localhost\r\n\r\n'],
  ];
  for (const [name, request] of requests) {
    test(name, async () => {
      const answer = parseAnswer(await sendUntilClosed(request));

      assert.equal(answer.status, 400);
      assert.match(answer.contentType, /^application\/json/);
      assert.equal(answer.json?.error, 'invalid_request');
      await assertStillServing();
    });
  }
});

test('database intact afterwards', async () => {
  serverClosed = true;
  await server.close();

  const database = new SQLite(path.join(server.dataDir, 'portcullis.db'), { readonly: true });
  try {
    assert.equal(database.pragma('integrity_check', { simple: true }), 'ok');
    const device = database.prepare('SELECT client_id FROM devices WHERE client_id = ?').get(deviceId);
    assert.deepEqual(device, { client_id: deviceId });
  } finally {
    database.close();
  }
});
