// The token-free metrics listener of --metrics-listen: it serves only GET /metrics, only on a
// loopback address, and closes with the server.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import { resolveOptions } from '../../src/config/load.ts';
import { OptionsError, validateOptions } from '../../src/config/options.ts';
import { parseMetricsListen } from '../../src/metrics/listen-address.ts';
import { parsePrometheusText, sampleValue } from '../support/prometheus-text.ts';
import { startTestServer, temporaryDataDir, type TestServer } from '../support/server.ts';

describe('metrics listener', () => {
  let server: TestServer;
  let metricsUrl: string;

  before(async () => {
    server = await startTestServer({ metricsListen: '127.0.0.1:0' });
    metricsUrl = server.running.metricsListenUrl!;
  });

  after(async () => {
    await server.close();
  });

  test('serves metrics without token', async () => {
    const response = await fetch(`${metricsUrl}/metrics`);

    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const families = parsePrometheusText(await response.text());
    assert.equal(sampleValue(families, 'portcullis_database_up', { backend: 'sqlite' }), 1);
    assert.equal(families.get('portcullis_handshakes_total')?.type, 'counter');
  });

  test('listens on loopback only', () => {
    assert.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test('other path is not found', async () => {
    const response = await fetch(`${metricsUrl}/readyz`);

    assert.equal(response.status, 404);
    assert.equal((await response.json() as { error: string }).error, 'not_found');
  });

  test('POST is not allowed', async () => {
    const response = await fetch(`${metricsUrl}/metrics`, { method: 'POST' });

    assert.equal(response.status, 405);
    assert.equal(response.headers.get('allow'), 'GET, HEAD');
    assert.equal((await response.json() as { error: string }).error, 'method_not_allowed');
  });

  test('foreign Host is refused', async () => {
    // A page that reached this listener through DNS rebinding sends its own host name.
    const { port } = new URL(metricsUrl);
    const status = await new Promise<number>((resolve, reject) => {
      const request = http.get({ host: '127.0.0.1', port, path: '/metrics', headers: { host: `attacker.example:${port}` } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.once('error', reject);
    });

    assert.equal(status, 400);
  });

  test('HTTPS listener still needs a token', async () => {
    const response = await server.fetch(`${server.url}/metrics`);

    assert.equal(response.status, 401);
    assert.equal((await response.json() as { error: string }).error, 'token_missing');
  });
});

describe('metrics listener address', () => {
  const rejected = ['0.0.0.0:9464', '[::]:9464', '192.0.2.1:9464', 'localhost:9464', '[fe80::1]:9464'];
  for (const value of rejected) {
    test(`rejects ${value}`, () => {
      assert.throws(() => validateOptions({ metricsListen: value }), (error: unknown) => {
        assert.ok(error instanceof OptionsError);
        assert.match(error.message, /^metricsListen \(--metrics-listen\) accepts only a loopback IP address/);
        return true;
      });
    });
  }

  const malformed = ['127.0.0.1', '127.0.0.1:', ':9464', '127.0.0.1:65536', '::1:9464', 9464];
  for (const value of malformed) {
    test(`rejects malformed ${JSON.stringify(value)}`, () => {
      assert.throws(() => validateOptions({ metricsListen: value }), OptionsError);
    });
  }

  test('accepts loopback forms', () => {
    assert.deepEqual(parseMetricsListen('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
    assert.deepEqual(parseMetricsListen('127.5.6.7:0'), { host: '127.5.6.7', port: 0 });
    assert.deepEqual(parseMetricsListen('[::1]:9464'), { host: '::1', port: 9464 });
  });

  test('default is off', () => {
    assert.equal(validateOptions({}).metricsListen, null);
  });

  test('read from the environment', () => {
    const options = resolveOptions({}, { PORTCULLIS_METRICS_LISTEN: '127.0.0.1:9464' });

    assert.equal(options.metricsListen, '127.0.0.1:9464');
  });

  test('server refuses to start', async () => {
    const dataDir = temporaryDataDir();

    await assert.rejects(startTestServer({ dataDir, metricsListen: '0.0.0.0:0' }), OptionsError);
  });
});

describe('metrics listener shutdown', () => {
  test('closes with the server', async () => {
    const server = await startTestServer({ metricsListen: '127.0.0.1:0' });
    const metricsUrl = server.running.metricsListenUrl!;
    assert.equal((await fetch(`${metricsUrl}/metrics`)).status, 200);

    await server.close();

    await assert.rejects(fetch(`${metricsUrl}/metrics`), TypeError);
  });
});
