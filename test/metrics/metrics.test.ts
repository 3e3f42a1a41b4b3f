// GET /metrics on the HTTPS listener: the token and scope checks, and counters that move with real
// events on a real server over TLS. Each check reads the scrape before and after one event and
// compares the difference, so the tests do not depend on their order.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { rememberSecret } from '../support/capture.ts';
import { approveDevice, postOauthForm, redeemRefreshToken, tokensOf } from '../support/oauth-flows.ts';
import { parsePrometheusText, sampleValue, type MetricFamily } from '../support/prometheus-text.ts';
import { probeDeviceConnection } from '../support/websocket.ts';
import { addDevice, addUser, deviceToken, runServerCli, startTestServer, type TestServer } from '../support/server.ts';
import { deviceRoundTrip, openDeviceSocket } from '../support/websocket.ts';

type Families = Map<string, MetricFamily>;

// Counters fed by log lines move when the server logs, which may be a moment after the client sees
// the effect, so a check scrapes again until the value moves or this bound passes.
const metricWaitMs = 10_000;
// Loopback kernel buffers absorb several MiB before the server's own queue grows, so the slow-consumer
// test publishes until the server closes the socket, up to this many messages.
const maximumSlowConsumerMessages = 20_000;

describe('metrics endpoint', () => {
  let server: TestServer;
  let scraperToken: string;

  async function scrapeResponse(token: string | null): Promise<Response> {
    return server.fetch(`${server.url}/metrics`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
  }

  async function scrape(): Promise<Families> {
    const response = await scrapeResponse(scraperToken);
    assert.equal(response.status, 200, await response.clone().text());
    return parsePrometheusText(await response.text());
  }

  /** Scrapes until `name{labels}` has grown by at least `increase` over `baseline`, and returns the last scrape. */
  async function waitForIncrease(baseline: Families, name: string, labels: Record<string, string>, increase = 1): Promise<Families> {
    const expected = sampleValue(baseline, name, labels) + increase;
    const deadline = Date.now() + metricWaitMs;
    for (;;) {
      const families = await scrape();
      const value = sampleValue(families, name, labels);
      if (value >= expected || Date.now() > deadline) {
        assert.equal(value, expected, `${name}${JSON.stringify(labels)}`);
        return families;
      }
      await delay(50);
    }
  }

  before(async () => {
    // The smallest allowed queue, so that the slow-consumer test needs few messages.
    server = await startTestServer({ maxBufferedBytes: 64 * 1024 });
    const scraper = await addDevice(server, 'scraper', ['--scope', 'admin:metrics']);
    scraperToken = await deviceToken(server, scraper);
    rememberSecret(scraperToken);
  });

  after(async () => {
    await server.close();
  });

  test('scrape parses as Prometheus text', async () => {
    const response = await scrapeResponse(scraperToken);

    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(response.headers.get('cache-control'), 'no-store');
    const families = parsePrometheusText(await response.text());
    assert.equal(families.get('process_cpu_user_seconds_total')?.type, 'counter');
    assert.equal(families.get('portcullis_connections')?.type, 'gauge');
    assert.equal(families.get('portcullis_handshake_duration_seconds')?.type, 'histogram');
    assert.equal(families.get('portcullis_token_verification_duration_seconds')?.type, 'histogram');
    assert.equal(sampleValue(families, 'portcullis_database_up', { backend: 'sqlite' }), 1);
    assert.equal(families.has('portcullis_redis_up'), false);
  });

  test('scrape without token', async () => {
    const response = await scrapeResponse(null);

    assert.equal(response.status, 401);
    assert.equal(response.headers.get('www-authenticate'), 'Bearer');
    assert.deepEqual(await response.json(), { error: 'token_missing', error_description: 'No access token was presented.' });
  });

  test('scrape with invalid token', async () => {
    const response = await scrapeResponse(`${scraperToken.slice(0, -4)}AAAA`);

    assert.equal(response.status, 401);
    assert.equal((await response.json() as { error: string }).error, 'token_invalid');
  });

  test('scrape without admin:metrics scope', async () => {
    const device = await addDevice(server, 'no-metrics-scope');
    const token = await deviceToken(server, device);

    const response = await scrapeResponse(token);

    assert.equal(response.status, 403);
    assert.equal(response.headers.get('www-authenticate'), 'Bearer error="insufficient_scope"');
    assert.equal((await response.json() as { error: string }).error, 'forbidden');
  });

  test('scrape with token in URL', async () => {
    const response = await server.fetch(`${server.url}/metrics?access_token=${scraperToken}`);

    assert.equal(response.status, 400);
    assert.equal((await response.json() as { error: string }).error, 'token_in_url');
  });

  test('device connection, messages and close', async () => {
    const device = await addDevice(server, 'counted-device');
    const token = await deviceToken(server, device);
    const baseline = await scrape();

    const socket = await openDeviceSocket(server, { clientId: device.client_id, accessToken: token });
    const connected = await waitForIncrease(baseline, 'portcullis_handshakes_total', { outcome: 'accepted' });
    assert.equal(sampleValue(connected, 'portcullis_connections', { kind: 'device' }), sampleValue(baseline, 'portcullis_connections', { kind: 'device' }) + 1);
    assert.equal(sampleValue(connected, 'portcullis_handshake_duration_seconds_count', { outcome: 'accepted' }), sampleValue(baseline, 'portcullis_handshake_duration_seconds_count', { outcome: 'accepted' }) + 1);
    assert.ok(sampleValue(connected, 'portcullis_token_verification_duration_seconds_count', { outcome: 'valid' }) > sampleValue(baseline, 'portcullis_token_verification_duration_seconds_count', { outcome: 'valid' }));

    // Subscribe and publish: two frames in; welcome, subscribed, published and the message out.
    await deviceRoundTrip(socket, { reading: 21 });
    const exchanged = await scrape();
    assert.equal(sampleValue(exchanged, 'portcullis_messages_received_total') - sampleValue(baseline, 'portcullis_messages_received_total'), 2);
    assert.equal(sampleValue(exchanged, 'portcullis_messages_sent_total') - sampleValue(baseline, 'portcullis_messages_sent_total'), 4);
    const receivedBytes = socket.received.slice(0, 4).reduce((total, frame) => total + Buffer.byteLength(frame), 0);
    assert.equal(sampleValue(exchanged, 'portcullis_sent_bytes_total') - sampleValue(baseline, 'portcullis_sent_bytes_total'), receivedBytes);
    assert.ok(sampleValue(exchanged, 'portcullis_received_bytes_total') > sampleValue(baseline, 'portcullis_received_bytes_total'));

    await socket.close();
    const closed = await waitForIncrease(baseline, 'portcullis_connections_closed_total', { code: '1000' });
    assert.equal(sampleValue(closed, 'portcullis_connections', { kind: 'device' }), sampleValue(baseline, 'portcullis_connections', { kind: 'device' }));
  });

  test('handshake with invalid token', async () => {
    const baseline = await scrape();

    const outcome = await probeDeviceConnection(server.port, server.caPem, 'scraper', 'not-a-token');

    assert.equal(outcome.status, 401);
    const after = await waitForIncrease(baseline, 'portcullis_handshakes_total', { outcome: 'rejected', code: 'token_invalid' });
    assert.equal(sampleValue(after, 'portcullis_handshake_duration_seconds_count', { outcome: 'rejected' }), sampleValue(baseline, 'portcullis_handshake_duration_seconds_count', { outcome: 'rejected' }) + 1);
    assert.equal(sampleValue(after, 'portcullis_handshakes_total', { outcome: 'accepted' }), sampleValue(baseline, 'portcullis_handshakes_total', { outcome: 'accepted' }));
  });

  test('token requests by grant and outcome', async () => {
    const device = await addDevice(server, 'token-counting-device');
    const baseline = await scrape();

    await deviceToken(server, device);
    const rejected = await postOauthForm(server, '/oauth/token', { grant_type: 'client_credentials' }, { client_id: device.client_id, client_secret: 'wrong secret' });

    assert.equal(rejected.status, 401);
    await waitForIncrease(baseline, 'portcullis_token_requests_total', { grant_type: 'client_credentials', outcome: 'success' });
    await waitForIncrease(baseline, 'portcullis_token_requests_total', { grant_type: 'client_credentials', outcome: 'invalid_client' });
  });

  test('refresh token reuse', async () => {
    await addUser(server, 'reuse-owner', 'a long password for the reuse owner');
    const device = await addDevice(server, 'reuse-device', ['--owner', 'reuse-owner']);
    const grant = await approveDevice(server, device, 'reuse-owner');
    tokensOf(await redeemRefreshToken(server, device, grant.refreshToken));
    const baseline = await scrape();

    const reused = await redeemRefreshToken(server, device, grant.refreshToken);

    assert.equal(reused.status, 400);
    assert.equal(reused.body.error, 'invalid_grant');
    await waitForIncrease(baseline, 'portcullis_refresh_token_reuse_total', { kind: 'reused' });
    await waitForIncrease(baseline, 'portcullis_token_requests_total', { grant_type: 'refresh_token', outcome: 'invalid_grant' });
    const reuseLines = server.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.event === 'refresh_token.reused');
    assert.equal(reuseLines.length, 1);
    assert.equal(reuseLines[0].grant_id, grant.grantId);
    assert.equal(reuseLines[0].client_id, device.client_id);
  });

  test('slow consumer drop', async () => {
    const device = await addDevice(server, 'slow-device');
    const socket = await openDeviceSocket(server, { clientId: device.client_id, accessToken: await deviceToken(server, device) });
    const channel = `devices/${device.client_id}/commands`;
    assert.equal((await socket.request({ type: 'subscribe', channel })).type, 'subscribed');
    const baseline = await scrape();

    // ws stops reading the TCP socket while paused, so the server's queue for it grows.
    socket.socket.pause();
    const padding = 'x'.repeat(4096);
    for (let sent = 0; sent < maximumSlowConsumerMessages && server.running.publish(channel, { padding }) > 0; sent += 1) {
      if (sent % 100 === 0) {
        await delay(1);
      }
    }

    await waitForIncrease(baseline, 'portcullis_slow_consumer_drops_total', {});
    socket.socket.terminate();
  });

  test('devices remove closes with 4403', async () => {
    const device = await addDevice(server, 'removed-counted-device');
    const socket = await openDeviceSocket(server, { clientId: device.client_id, accessToken: await deviceToken(server, device) });
    const baseline = await scrape();

    const removal = await runServerCli(server, ['devices', 'remove', device.client_id]);

    assert.equal(removal.code, 0, removal.stderr);
    assert.deepEqual(await socket.waitForClose(), { code: 4403, reason: 'token_revoked' });
    await waitForIncrease(baseline, 'portcullis_connections_revoked_total', { reason: 'device_removed' });
    await waitForIncrease(baseline, 'portcullis_revocations_applied_total', { reason: 'device_removed' });
    await waitForIncrease(baseline, 'portcullis_connections_closed_total', { code: '4403' });
  });
});
