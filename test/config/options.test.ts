import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { optionSources, resolveOptions } from '../../src/config/load.ts';
import { defaultOptions, OptionsError, validateOptions } from '../../src/config/options.ts';
import { freePort, runCli, temporaryDataDir } from '../support/server.ts';

/** Asserts that `run` throws an `OptionsError` (exit code 2) whose message matches every pattern. */
function assertOptionsError(run: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof OptionsError, `expected an OptionsError, got ${String(error)}`);
    assert.equal(error.exitCode, 2);
    assert.equal(error.code, 'invalid_option');
    for (const pattern of patterns) {
      assert.match(error.message, pattern);
    }
    return true;
  });
}

function writeConfig(content: string): string {
  const file = path.join(temporaryDataDir(), 'portcullis.json');
  fs.writeFileSync(file, content);
  return file;
}

describe('validateOptions', () => {
  test('defaults', () => {
    const options = validateOptions({});

    assert.deepEqual(options, {
      ...defaultOptions,
      dataDir: path.resolve('./.portcullis'),
      allowedOrigins: ['https://localhost:8443'],
    });
    assert.equal(options.handshakeTimeoutMs, 10_000);
    assert.equal(options.maxHeaderBytes, 16 * 1024);
    assert.equal(options.maxPayloadBytes, 64 * 1024);
    assert.equal(options.clockLeewaySeconds, 30);
    assert.equal(options.auditRetentionDays, 30);
  });

  test('limit defaults match the documented values', () => {
    const options = validateOptions({});

    assert.equal(options.perMessageDeflate, false);
    assert.equal(options.maxSubscriptions, 100);
    assert.equal(options.messageRatePerSecond, 50);
    assert.equal(options.maxBufferedBytes, 1024 * 1024);
    assert.equal(options.heartbeatIntervalMs, 25_000);
    assert.equal(options.maxConnectionsPerClient, 5);
    assert.equal(options.maxConnectionsPerUser, 20);
    assert.equal(options.handshakesPerIpPerMinute, 300);
    assert.equal(options.handshakesPerClientPerMinute, 30);
    assert.equal(options.maxPendingHandshakes, 256);
    assert.equal(options.webhookUrl, null);
  });

  const webhookUrls: Array<[string, boolean]> = [
    ['https://hooks.example.com/portcullis', true],
    ['http://127.0.0.1:9000/hook', true],
    ['http://127.10.0.1/hook', true],
    ['http://localhost:9000/hook', true],
    ['http://[::1]:9000/hook', true],
    ['http://127.example.com/hook', false],
    ['http://127.0.0.1.nip.io/hook', false],
    ['http://hooks.example.com/hook', false],
    ['https://user:secret@hooks.example.com/hook', false],
    ['ftp://127.0.0.1/hook', false],
    ['not a url', false],
  ];
  for (const [url, accepted] of webhookUrls) {
    test(`webhook URL ${url} is ${accepted ? 'accepted' : 'rejected'}`, () => {
      if (accepted) {
        assert.equal(validateOptions({ webhookUrl: url }).webhookUrl, new URL(url).href);
        return;
      }
      assertOptionsError(() => validateOptions({ webhookUrl: url }), /webhookUrl \(--webhook-url\)/);
    });
  }

  test('result and its lists are frozen', () => {
    const options = validateOptions({});

    assert.ok(Object.isFrozen(options));
    assert.ok(Object.isFrozen(options.allowedOrigins));
    assert.ok(Object.isFrozen(options.trustedProxies));
    assert.throws(() => { (options as { port: number }).port = 1; }, TypeError);
  });

  test('allowed origins default to the public URL', () => {
    assert.deepEqual(validateOptions({ publicUrl: 'https://gw.example' }).allowedOrigins, ['https://gw.example']);
  });

  test('numbers given as strings are parsed', () => {
    assert.equal(validateOptions({ port: '9443' }).port, 9443);
  });

  test('unknown option is named', () => {
    assertOptionsError(() => validateOptions({ prot: 8443 }), /Unknown option "prot"/, /known options are: .*port/);
  });

  const badPorts: unknown[] = ['abc', '', -1, 65536, 1.5, '8443x', null, true];
  for (const port of badPorts) {
    test(`port ${JSON.stringify(port)} is rejected`, () => {
      assertOptionsError(() => validateOptions({ port }), /port \(--port\)/, /whole number from 0 to 65535/);
    });
  }

  test('tls cert without key', () => {
    assertOptionsError(() => validateOptions({ tlsCertFile: '/etc/portcullis/cert.pem' }), /tlsCertFile \(--tls-cert\)/, /tlsKeyFile \(--tls-key\)/, /together/);
  });

  test('tls key without cert', () => {
    assertOptionsError(() => validateOptions({ tlsKeyFile: '/etc/portcullis/key.pem' }), /must be given together/);
  });

  const badOrigins: Array<[string, string, RegExp]> = [
    ['not a URL', 'app.example.com', /absolute https:\/\/ origin/],
    ['http scheme', 'http://app.example.com', /must use https:\/\//],
    ['with a path', 'https://app.example.com/app', /use https:\/\/app\.example\.com/],
    ['with credentials', 'https://user@app.example.com', /without path, query or credentials/],
    ['empty', '', /non-empty strings/],
  ];
  for (const [name, origin, pattern] of badOrigins) {
    test(`allowed origin ${name} is rejected`, () => {
      assertOptionsError(() => validateOptions({ allowedOrigins: [origin] }), /allowedOrigins \(--allowed-origin\)/, pattern);
    });
  }

  test('allowed origins are normalised', () => {
    const options = validateOptions({ allowedOrigins: ['https://APP.Example.com:443', 'https://app.example.com:8443/'] });

    assert.deepEqual(options.allowedOrigins, ['https://app.example.com', 'https://app.example.com:8443']);
  });

  const badValues: Array<[string, Record<string, unknown>, RegExp]> = [
    ['clock leeway above 60', { clockLeewaySeconds: 61 }, /clockLeewaySeconds \(--clock-leeway\)/],
    ['handshake timeout of 0', { handshakeTimeoutMs: 0 }, /handshakeTimeoutMs \(--handshake-timeout\)/],
    ['header limit below 1 KiB', { maxHeaderBytes: 100 }, /maxHeaderBytes \(--max-header-size\)/],
    ['unknown log level', { logLevel: 'verbose' }, /logLevel \(--log-level\) must be one of/],
    ['public URL over http', { publicUrl: 'http://localhost:8443' }, /publicUrl \(--public-url\) must use https/],
    ['Redis key prefix with a space', { redisKeyPrefix: 'my app:' }, /redisKeyPrefix \(--redis-key-prefix\) must be 1 to 64/],
    ['Redis key prefix with a wildcard', { redisKeyPrefix: 'app*' }, /redisKeyPrefix \(--redis-key-prefix\)/],
    ['audit retention of 0 days', { auditRetentionDays: 0 }, /auditRetentionDays \(--audit-retention-days\)/],
    ['audit retention above 3650 days', { auditRetentionDays: 3651 }, /auditRetentionDays \(--audit-retention-days\)/],
  ];
  for (const [name, input, pattern] of badValues) {
    test(name, () => {
      assertOptionsError(() => validateOptions(input), pattern);
    });
  }
});

describe('plainPort', () => {
  test('defaults to none', () => {
    assert.equal(validateOptions({}).plainPort, null);
  });

  test('with a trusted proxy is accepted', () => {
    const options = validateOptions({ plainPort: '8080', trustedProxies: ['10.0.0.2'] });

    assert.equal(options.plainPort, 8080);
  });

  test('0 is accepted, also with port 0', () => {
    assert.equal(validateOptions({ plainPort: 0, port: 0, trustedProxies: ['10.0.0.2'] }).plainPort, 0);
  });

  test('without trusted proxies is rejected', () => {
    assertOptionsError(() => validateOptions({ plainPort: 8080 }), /^plainPort \(--plain-port\) needs trustedProxies \(--trusted-proxy\)/, /Add the proxy's address with --trusted-proxy/);
  });

  test('with only CIDR ranges is rejected', () => {
    assertOptionsError(() => validateOptions({ plainPort: 8080, trustedProxies: ['10.0.0.0/8'] }), /at least one single IP address/, /does not match CIDR ranges/);
  });

  test('equal to port is rejected', () => {
    assertOptionsError(() => validateOptions({ plainPort: 8443, port: 8443, trustedProxies: ['10.0.0.2'] }), /plainPort \(--plain-port\) must differ from port \(--port\), got 8443 for both/);
  });

  const badPlainPorts: unknown[] = ['abc', -1, 65536, 1.5];
  for (const plainPort of badPlainPorts) {
    test(`${JSON.stringify(plainPort)} is rejected`, () => {
      assertOptionsError(() => validateOptions({ plainPort, trustedProxies: ['10.0.0.2'] }), /plainPort \(--plain-port\) must be a whole number from 0 to 65535/);
    });
  }

  test('comes from its flag and variable', () => {
    assert.equal(resolveOptions({ 'plain-port': '8081', 'trusted-proxy': ['10.0.0.2'] }, {}).plainPort, 8081);
    assert.equal(resolveOptions({}, { PORTCULLIS_PLAIN_PORT: '8082', PORTCULLIS_TRUSTED_PROXIES: '10.0.0.2' }).plainPort, 8082);
  });
});

describe('resolveOptions', () => {
  test('flags beat environment beat config file', () => {
    const config = writeConfig(JSON.stringify({ port: 1111, host: '127.0.0.2', logLevel: 'warn', clockLeewaySeconds: 5 }));
    const env = { PORTCULLIS_PORT: '2222', PORTCULLIS_HOST: '127.0.0.3', PORTCULLIS_CLOCK_LEEWAY: '' };

    const options = resolveOptions({ config, port: '3333' }, env);

    assert.equal(options.port, 3333, 'flag beats environment');
    assert.equal(options.host, '127.0.0.3', 'environment beats config file');
    assert.equal(options.logLevel, 'warn', 'config file beats default');
    assert.equal(options.clockLeewaySeconds, 5, 'an empty variable is ignored');
    assert.equal(options.handshakeTimeoutMs, defaultOptions.handshakeTimeoutMs);
  });

  const limitInputs: Array<[keyof typeof defaultOptions, string, unknown]> = [
    ['perMessageDeflate', 'true', true],
    ['maxSubscriptions', '7', 7],
    ['messageRatePerSecond', '9', 9],
    ['heartbeatIntervalMs', '1500', 1500],
    ['maxConnectionsPerClient', '2', 2],
    ['maxConnectionsPerUser', '3', 3],
    ['handshakesPerIpPerMinute', '11', 11],
    ['handshakesPerClientPerMinute', '4', 4],
    ['maxPendingHandshakes', '12', 12],
    ['webhookUrl', 'https://hooks.example.com/in', 'https://hooks.example.com/in'],
    ['webhookSecretFile', '/etc/portcullis/webhook-secret', '/etc/portcullis/webhook-secret'],
    ['redisKeyPrefix', 'eu-1:{gateway}:', 'eu-1:{gateway}:'],
    ['auditRetentionDays', '90', 90],
  ];
  for (const [option, text, expected] of limitInputs) {
    test(`${option} comes from its flag and variable`, () => {
      const source = optionSources.find((candidate) => candidate.option === option);
      assert.ok(source, `${option} has no flag`);

      assert.deepEqual(resolveOptions({ [source.flag]: text }, {})[option], expected);
      assert.deepEqual(resolveOptions({}, { [source.env]: text })[option], expected);
    });
  }

  test('PORTCULLIS_CONFIG names the file when --config is absent', () => {
    const config = writeConfig(JSON.stringify({ port: 4444 }));

    assert.equal(resolveOptions({}, { PORTCULLIS_CONFIG: config }).port, 4444);
  });

  test('list variables are split on commas', () => {
    const options = resolveOptions({}, { PORTCULLIS_ALLOWED_ORIGINS: 'https://a.example, https://b.example,' });

    assert.deepEqual(options.allowedOrigins, ['https://a.example', 'https://b.example']);
  });

  test('repeated list flags replace the environment list', () => {
    const options = resolveOptions({ 'trusted-proxy': ['10.0.0.1', '10.0.0.2'] }, { PORTCULLIS_TRUSTED_PROXIES: '10.0.0.9' });

    assert.deepEqual(options.trustedProxies, ['10.0.0.1', '10.0.0.2']);
  });

  test('invalid environment value names the option', () => {
    assertOptionsError(() => resolveOptions({}, { PORTCULLIS_PORT: 'abc' }), /port \(--port\)/);
  });

  test('config file with invalid JSON', () => {
    const config = writeConfig('{"port": 8443,}');

    assertOptionsError(() => resolveOptions({ config }, {}), new RegExp(`--config ${escape(config)} is not valid JSON`), /Fix the file/);
  });

  test('config file that is not an object', () => {
    const config = writeConfig('[8443]');

    assertOptionsError(() => resolveOptions({ config }, {}), /must hold a JSON object of options/);
  });

  test('missing config file', () => {
    const config = path.join(temporaryDataDir(), 'absent.json');

    assertOptionsError(() => resolveOptions({ config }, {}), /could not be read \(ENOENT\); check the path/);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('portcullis start with bad options', () => {
  // Every run also names a port that is already taken. If validation wrongly passed, the server
  // would fail to listen and the CLI would exit 1 instead of serving until killed.
  let blocker: net.Server;
  let takenPort: number;

  before(async () => {
    takenPort = await freePort();
    blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(takenPort, '127.0.0.1', resolve));
  });

  after(async () => {
    await new Promise((resolve) => blocker.close(resolve));
  });

  test('invalid JSON config exits 2', async () => {
    const config = writeConfig('{ port: 8443 }');

    const result = await runCli(temporaryDataDir(), ['start', '--config', config, '--host', '127.0.0.1', '--port', String(takenPort)]);

    assert.equal(result.code, 2, result.stderr);
    assert.ok(result.stderr.includes(`--config ${config} is not valid JSON`), result.stderr);
    assert.match(result.stderr, /Fix the file, for example \{"port": 8443\}/);
  });

  test('--port abc exits 2', async () => {
    const result = await runCli(temporaryDataDir(), ['start', '--host', '127.0.0.1', '--port', 'abc']);

    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^portcullis start: port \(--port\) must be a whole number from 0 to 65535, got "abc"\.$/m);
  });

  test('unknown config key exits 2', async () => {
    const config = writeConfig(JSON.stringify({ handshakeTimeoutSeconds: 5 }));

    const result = await runCli(temporaryDataDir(), ['start', '--config', config, '--host', '127.0.0.1', '--port', String(takenPort)]);

    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /Unknown option "handshakeTimeoutSeconds"/);
  });

  test('--plain-port without --trusted-proxy exits 2', async () => {
    const result = await runCli(temporaryDataDir(), ['start', '--plain-port', '0', '--host', '127.0.0.1', '--port', String(takenPort)]);

    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^portcullis start: plainPort \(--plain-port\) needs trustedProxies \(--trusted-proxy\)/m);
  });

  test('unknown flag exits 2', async () => {
    const result = await runCli(temporaryDataDir(), ['start', '--prot', '8443', '--host', '127.0.0.1', '--port', String(takenPort)]);

    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /--prot/);
    assert.match(result.stderr, /portcullis help/);
  });
});

describe('roles and external issuers', () => {
  const external = { role: 'gateway', issuer: 'https://id.example.test/realms/iot', audience: 'portcullis' };

  test('issuer kept exactly, four algorithms default', () => {
    const options = validateOptions({ ...external, issuer: 'https://tenant.example.test/' });

    assert.equal(options.role, 'gateway');
    assert.equal(options.issuer, 'https://tenant.example.test/');
    assert.deepEqual(options.tokenAlgorithms, ['ES256', 'EdDSA', 'RS256', 'PS256']);
    assert.equal(options.acceptJwtType, false);
  });

  test('unknown role rejected', () => {
    assertOptionsError(() => validateOptions({ role: 'proxy' }), /role \(--role\) must be one of all, auth, gateway/);
  });

  test('issuer needs gateway role and audience', () => {
    assertOptionsError(() => validateOptions({ issuer: external.issuer, audience: 'x' }), /needs role \(--role\) gateway/);
    assertOptionsError(() => validateOptions({ role: 'gateway', issuer: external.issuer }), /audience \(--audience\) is required/);
  });

  test('none, HMAC and unlisted algorithms rejected', () => {
    for (const algorithm of ['none', 'HS256', 'RS512', 'es256']) {
      assertOptionsError(() => validateOptions({ ...external, tokenAlgorithms: [algorithm] }), /accepts only ES256, EdDSA, RS256, PS256/);
    }
  });

  test('malformed issuer URLs rejected', () => {
    assertOptionsError(() => validateOptions({ ...external, issuer: 'http://id.example.test' }), /issuer \(--issuer\) must be an https:\/\/ URL/);
    assertOptionsError(() => validateOptions({ ...external, issuer: 'https://user:pw@id.example.test' }), /without credentials/);
    assertOptionsError(() => validateOptions({ ...external, issuer: 'https://id.example.test/#' }), /without credentials, query, fragment or spaces/);
    assertOptionsError(() => validateOptions({ ...external, jwksUrl: 'https://id.example.test/keys?' }), /jwksUrl \(--jwks-url\) must be an https:\/\/ URL/);
  });

  test('issuer settings without issuer rejected', () => {
    assertOptionsError(() => validateOptions({ audience: 'portcullis' }), /audience applies only with issuer/);
    assertOptionsError(() => validateOptions({ clientIdClaim: 'azp' }), /clientIdClaim applies only with issuer/);
  });

  test('issuer flags reach options', () => {
    const options = resolveOptions({ role: 'gateway', issuer: external.issuer, audience: 'portcullis', 'token-algorithm': ['RS256'], 'accept-jwt-type': 'true', 'client-id-claim': 'azp' }, {});

    assert.deepEqual(options.tokenAlgorithms, ['RS256']);
    assert.equal(options.acceptJwtType, true);
    assert.equal(options.clientIdClaim, 'azp');
  });
});
