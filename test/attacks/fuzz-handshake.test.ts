// Property-based attacks on the handshake: generated upgrade requests over real TLS, and the
// guard's parsers in process. Each property runs a fixed number of inputs from a fixed seed, so a
// failure repeats. PORTCULLIS_FUZZ_SEED sets another seed. `npm run fuzz` runs the same
// properties with many more inputs. The last test keeps the requests for which the fuzzer found
// responses outside the error catalogue, each with its exact expected response.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import fc from 'fast-check';

import { testParameters } from './fuzz/fuzz-seed.ts';
import { startFuzzTarget, type FuzzTarget } from './fuzz/fuzz-target.ts';
import { guardParsersProperty } from './fuzz/guard-properties.ts';
import { encodeRequest, type HandshakeRequest } from './fuzz/handshake-arbitraries.ts';
import { responseLabel, handshakeResponseProblem } from './fuzz/handshake-oracle.ts';
import { responseWaitMs, assertServerServes, genuineHandshakeProperty, handshakeCredentials, handshakeOutcomeProperty } from './fuzz/handshake-properties.ts';
import { exchange } from './fuzz/http-exchange.ts';

let target: FuzzTarget;

before(async () => {
  target = await startFuzzTarget();
});

after(async () => {
  await target?.close();
});

test('fuzz: guard parsers on any header value', () => {
  fc.assert(guardParsersProperty(), testParameters(2000));
});

test('fuzz: mutated handshakes get documented responses', async () => {
  await fc.assert(handshakeOutcomeProperty({ target }), testParameters(250));
  await assertServerServes(target);
});

test('fuzz: genuine handshakes with allowed variations connect', async () => {
  await fc.assert(genuineHandshakeProperty({ target }), testParameters(100));
  await assertServerServes(target);
});

/** Builds a device upgrade with the genuine credentials and `changes` applied. */
function deviceUpgrade(changes: { method?: string; target?: string; headers?: Array<[string, string]>; key?: string }): HandshakeRequest {
  const { port, clientId, deviceTokens } = handshakeCredentials(target);
  return {
    method: changes.method ?? 'GET',
    target: changes.target ?? '/ws',
    httpVersion: 'HTTP/1.1',
    headers: [
      ['Host', `localhost:${port}`],
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Version', '13'],
      ['Sec-WebSocket-Key', changes.key ?? 'dGhlIHNhbXBsZSBub25jZQ=='],
      ['Authorization', `Bearer ${deviceTokens.genuine}`],
      ['X-Client-Id', clientId],
      ...(changes.headers ?? []),
    ],
  };
}

function plainRequest(method: string, path: string, headers: Array<[string, string]>): HandshakeRequest {
  return { method, target: path, httpVersion: 'HTTP/1.1', headers };
}

test('fuzz findings: responses outside the catalogue', async () => {
  const host: [string, string] = ['Host', `localhost:${target.server.port}`];
  const cases: Array<[string, HandshakeRequest, string]> = [
    // Node destroyed the socket of a CONNECT request without a response.
    ['CONNECT with upgrade headers', deviceUpgrade({ method: 'CONNECT' }), '426 upgrade_required'],
    ['CONNECT to an authority', plainRequest('CONNECT', 'localhost:443', [['Host', 'localhost:443']]), '404 not_found'],
    // Node responded with a bare 417 and no body.
    ['Expect other than 100-continue', plainRequest('GET', '/no-such-path', [host, ['Expect', 'fuzz']]), '404 not_found'],
    // Node responded with a bare 400 and no body.
    ['HTTP/1.1 request without Host', plainRequest('GET', '/no-such-path', []), '400 invalid_request'],
    // Node kept the first of two Host lines; RFC 9112 section 3.2 requires a 400.
    ['request with two Host lines', plainRequest('GET', '/healthz', [host, ['Host', 'attacker.test']]), '400 invalid_request'],
    // With Node's own Host check off, these reached the guard and were upgraded.
    ['upgrade without Host', { ...deviceUpgrade({}), headers: deviceUpgrade({}).headers.filter(([name]) => name !== 'Host') }, '400 bad_handshake'],
    ['upgrade with two Host lines', deviceUpgrade({ headers: [['Host', 'attacker.test']] }), '400 bad_handshake'],
    // Node's parser takes these versions too; without a Host line they skipped the HTTP/1.1 rule.
    ['HTTP/2.0 request line without Host', { ...plainRequest('GET', '/healthz', []), httpVersion: 'HTTP/2.0' }, '400 invalid_request'],
    ['HTTP/0.9 request line without Host', { ...plainRequest('GET', '/healthz', []), httpVersion: 'HTTP/0.9' }, '400 invalid_request'],
    // ws rejected these after the guard had passed them, with a plain-text 400.
    ['subprotocol offered twice', deviceUpgrade({ headers: [['Sec-WebSocket-Protocol', 'portcullis.v1, portcullis.v1']] }), '400 bad_handshake'],
    ['no-break space after the subprotocol', deviceUpgrade({ headers: [['Sec-WebSocket-Protocol', 'portcullis.v1\xa0']] }), '400 bad_handshake'],
    ['no-break space after the key', deviceUpgrade({ key: 'dGhlIHNhbXBsZSBub25jZQ==\xa0' }), '400 bad_handshake'],
  ];

  const credentials = handshakeCredentials(target);
  for (const [name, request, expected] of cases) {
    const bytes = encodeRequest(request);
    const result = await exchange({ port: target.server.port, ca: target.server.caPem, request: bytes, isHeadRequest: false, waitMs: responseWaitMs });

    assert.equal(responseLabel(result), expected, `${name}: the response is not ${expected}`);
    assert.equal(handshakeResponseProblem(bytes, result, credentials), null, `${name}: the response is not a documented error`);
  }
  await assertServerServes(target);
});
