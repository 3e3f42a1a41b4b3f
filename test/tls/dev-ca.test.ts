import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';

import { loadTlsMaterial, type TlsMaterial } from '../../src/tls/dev-ca.ts';

const dayMs = 24 * 60 * 60 * 1000;

async function tempDataDir(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'portcullis-dev-ca-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function loadDevMaterial(dataDir: string): Promise<TlsMaterial> {
  return loadTlsMaterial({ dataDir, certFile: null, keyFile: null });
}

async function startServer(t: TestContext, material: TlsMaterial, host: string): Promise<number> {
  const server = https.createServer({ cert: material.cert, key: material.key }, (_request, response) => {
    response.end('ok');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

// Resolves once the handshake is verified. A verification failure rejects with the OpenSSL code.
async function handshake(options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(options, () => {
      socket.end();
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

async function readCa(material: TlsMaterial): Promise<string> {
  assert.ok(material.caFile, 'development material names its CA file');
  return fs.readFile(material.caFile, 'utf8');
}

async function ipv6LoopbackAvailable(): Promise<boolean> {
  const probe = https.createServer();
  return new Promise((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => probe.close(() => resolve(true)));
  });
}

test('generates once, then reuses', async (t) => {
  const dataDir = await tempDataDir(t);

  const first = await loadDevMaterial(dataDir);
  const caPem = await readCa(first);
  const second = await loadDevMaterial(dataDir);

  assert.equal(first.generated, true);
  assert.equal(first.caFile, path.join(dataDir, 'ca.pem'));
  assert.equal(second.generated, false);
  assert.equal(second.cert, first.cert);
  assert.equal(second.key, first.key);
  assert.equal(await readCa(second), caPem);
});

test('certificates carry the required extensions', async (t) => {
  const material = await loadDevMaterial(await tempDataDir(t));
  const ca = new X509Certificate(await readCa(material));
  const server = new X509Certificate(material.cert);

  assert.equal(ca.subject, 'CN=Portcullis Development CA');
  assert.equal(ca.ca, true);
  assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.ok(Date.parse(ca.validTo) - Date.parse(ca.validFrom) >= 3649 * dayMs);

  assert.equal(server.ca, false);
  assert.equal(server.checkIssued(ca), true);
  assert.equal(server.verify(ca.publicKey), true);
  assert.equal(server.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
  assert.deepEqual(server.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.ok(Date.parse(server.validTo) - Date.parse(server.validFrom) <= 397 * dayMs);
  assert.notEqual(server.serialNumber, ca.serialNumber);
});

test('https client trusting ca.pem verifies localhost', async (t) => {
  const material = await loadDevMaterial(await tempDataDir(t));
  const port = await startServer(t, material, '127.0.0.1');
  const ca = await readCa(material);

  const { authorized, body } = await new Promise<{ authorized: boolean; body: string }>((resolve, reject) => {
    const request = https.get({ host: '127.0.0.1', port, servername: 'localhost', ca, agent: false }, (response) => {
      const authorized = (response.socket as tls.TLSSocket).authorized;
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => { body += chunk; });
      response.on('end', () => resolve({ authorized, body }));
    });
    request.once('error', reject);
  });

  assert.equal(authorized, true);
  assert.equal(body, 'ok');
});

test('tls client verifies 127.0.0.1 by IP SAN', async (t) => {
  const material = await loadDevMaterial(await tempDataDir(t));
  const port = await startServer(t, material, '127.0.0.1');

  const socket = await handshake({ host: '127.0.0.1', port, ca: await readCa(material) });

  assert.equal(socket.authorized, true);
});

test('tls client verifies ::1 by IP SAN', async (t) => {
  if (!(await ipv6LoopbackAvailable())) {
    t.skip('no IPv6 loopback on this machine');
    return;
  }

  const material = await loadDevMaterial(await tempDataDir(t));
  const port = await startServer(t, material, '::1');

  const socket = await handshake({ host: '::1', port, ca: await readCa(material) });

  assert.equal(socket.authorized, true);
});

test('client without the CA rejects', async (t) => {
  const material = await loadDevMaterial(await tempDataDir(t));
  const port = await startServer(t, material, '127.0.0.1');

  await assert.rejects(
    handshake({ host: '127.0.0.1', port, servername: 'localhost' }),
    { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' },
  );
});

test('files get exact modes under strict umask', { skip: process.platform === 'win32' }, async (t) => {
  const dataDir = await tempDataDir(t);
  // A strict umask must not make ca.pem unreadable to the other local users whose clients trust it.
  const previousUmask = process.umask(0o077);
  try {
    await loadDevMaterial(dataDir);
  } finally {
    process.umask(previousUmask);
  }

  const modeOf = async (file: string) => (await fs.stat(path.join(dataDir, file))).mode & 0o777;

  assert.equal(await modeOf('tls/server-key.pem'), 0o600);
  assert.equal(await modeOf('tls/ca-key.pem'), 0o600);
  assert.equal(await modeOf('ca.pem'), 0o644);
  assert.equal(await modeOf('tls'), 0o700);
  assert.deepEqual((await fs.readdir(path.join(dataDir, 'tls'))).sort(), ['ca-key.pem', 'server-key.pem', 'server.pem']);
});

test('re-issues server certificate near expiry', async (t) => {
  const dataDir = await tempDataDir(t);
  // Issued 380 days ago, the 397-day certificate has 17 days left.
  t.mock.timers.enable({ apis: ['Date'], now: Date.now() - 380 * dayMs });
  const old = await loadDevMaterial(dataDir);
  t.mock.timers.reset();
  const caKeyBefore = await fs.readFile(path.join(dataDir, 'tls/ca-key.pem'), 'utf8');

  const renewed = await loadDevMaterial(dataDir);
  const ca = new X509Certificate(await readCa(renewed));
  const server = new X509Certificate(renewed.cert);

  assert.equal(renewed.generated, true);
  assert.notEqual(renewed.cert, old.cert);
  assert.notEqual(renewed.key, old.key);
  assert.equal(await readCa(renewed), await readCa(old));
  assert.equal(await fs.readFile(path.join(dataDir, 'tls/ca-key.pem'), 'utf8'), caKeyBefore);
  assert.equal(server.verify(ca.publicKey), true);
  assert.ok(Date.parse(server.validTo) - Date.now() > 390 * dayMs);
});

test('replaces a server key without certificate', async (t) => {
  const dataDir = await tempDataDir(t);
  const original = await loadDevMaterial(dataDir);
  // A crash after writing a new key but before its certificate leaves exactly this state.
  const stray = await loadDevMaterial(await tempDataDir(t));
  await fs.writeFile(path.join(dataDir, 'tls/server-key.pem'), stray.key);

  const repaired = await loadDevMaterial(dataDir);
  const ca = new X509Certificate(await readCa(repaired));
  const server = new X509Certificate(repaired.cert);

  assert.equal(repaired.generated, true);
  assert.notEqual(repaired.cert, original.cert);
  assert.equal(await readCa(repaired), await readCa(original));
  assert.equal(server.checkPrivateKey(createPrivateKey(repaired.key)), true);
  assert.equal(server.verify(ca.publicKey), true);
});

test('returns given files unchanged', async (t) => {
  const source = await loadDevMaterial(await tempDataDir(t));
  const dir = await tempDataDir(t);
  const certFile = path.join(dir, 'operator-cert.pem');
  const keyFile = path.join(dir, 'operator-key.pem');
  await fs.writeFile(certFile, source.cert);
  await fs.writeFile(keyFile, source.key, { mode: 0o600 });

  const material = await loadTlsMaterial({ dataDir: dir, certFile, keyFile });

  assert.deepEqual(material, { cert: source.cert, key: source.key, caFile: null, generated: false });
  assert.deepEqual(await fs.readdir(dir), ['operator-cert.pem', 'operator-key.pem']);
});

const halfPairs = [
  { name: 'only --tls-key', certFile: null, keyFile: '/nonexistent/key.pem', missing: /tlsCertFile \(--tls-cert\) is missing/ },
  { name: 'only --tls-cert', certFile: '/nonexistent/cert.pem', keyFile: null, missing: /tlsKeyFile \(--tls-key\) is missing/ },
];

for (const pair of halfPairs) {
  test(`${pair.name} names the missing option`, async (t) => {
    const dataDir = await tempDataDir(t);

    await assert.rejects(
      loadTlsMaterial({ dataDir, certFile: pair.certFile, keyFile: pair.keyFile }),
      (error: Error & { code?: string }) => {
        assert.match(error.message, pair.missing);
        assert.match(error.message, /pass both --tls-cert and --tls-key, or neither/);
        assert.equal(error.code, 'invalid_option');
        return true;
      },
    );
    assert.deepEqual(await fs.readdir(dataDir), []);
  });
}

test('unreadable --tls-cert names option and path', async (t) => {
  const dir = await tempDataDir(t);
  const certFile = path.join(dir, 'missing-cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  await fs.writeFile(keyFile, 'unused');

  await assert.rejects(
    loadTlsMaterial({ dataDir: dir, certFile, keyFile }),
    { code: 'invalid_option', message: `tlsCertFile (--tls-cert): failed to read ${certFile} (ENOENT); check the path and its permissions.` },
  );
});

test('mismatched --tls-key is rejected', async (t) => {
  const first = await loadDevMaterial(await tempDataDir(t));
  const second = await loadDevMaterial(await tempDataDir(t));
  const dir = await tempDataDir(t);
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  await fs.writeFile(certFile, first.cert);
  await fs.writeFile(keyFile, second.key);

  await assert.rejects(loadTlsMaterial({ dataDir: dir, certFile, keyFile }), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'invalid_option');
    assert.match(error.message, /^tlsKeyFile \(--tls-key\): .* is not the private key of the first certificate/);
    assert.ok(!error.message.includes('PRIVATE KEY'));
    return true;
  });
});
