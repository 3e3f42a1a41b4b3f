// Handshake properties over real TLS against a running server. `npm test` runs them with a few
// hundred inputs, `npm run fuzz` with many more.
import assert from 'node:assert/strict';

import fc from 'fast-check';

import { errorLogLines, type FuzzTarget } from './fuzz-target.ts';
import { encodeRequest, handshakeRequestArbitrary, type HandshakeCredentials, type HandshakeRequest } from './handshake-arbitraries.ts';
import { genuineHandshakeArbitrary, type GenuineHandshake } from './genuine-handshakes.ts';
import { acceptValue, responseLabel, handshakeResponseProblem } from './handshake-oracle.ts';
import { exchange, type ExchangeResult } from './http-exchange.ts';
import type { OutcomeTally } from './outcome-tally.ts';
import { changedTables, snapshotStore } from './store-snapshot.ts';

/**
 * Maximum wait for a response, in milliseconds. It is well above the target's 3 s request timeout,
 * after which the server responds to a request whose body never arrives. An input that reaches it
 * has hung the server. No assertion is about how long a response took.
 */
export const responseWaitMs = 20_000;

/** Where a property sends its inputs and counts their outcomes. */
export interface PropertyContext {
  target: FuzzTarget;
  tally?: OutcomeTally;
}

/** Collects the credentials and foreign tokens of a target for the request arbitraries. */
export function handshakeCredentials(target: FuzzTarget): HandshakeCredentials {
  const { server, device, otherDevice, removedDevice, browser } = target;
  return {
    port: server.port,
    clientId: device.clientId,
    otherClientIds: [otherDevice.clientId, removedDevice.clientId],
    validDevices: [device, otherDevice],
    origin: browser.origin,
    csrfToken: browser.csrfToken,
    deviceTokens: { genuine: device.accessToken, foreign: [otherDevice.accessToken, removedDevice.accessToken, target.expiredToken, browser.sessionToken], issuer: server.url },
    sessionTokens: { genuine: browser.sessionToken, foreign: [device.accessToken, otherDevice.accessToken], issuer: server.url },
  };
}

function send(target: FuzzTarget, request: HandshakeRequest): Promise<ExchangeResult> {
  const { server } = target;
  return exchange({ port: server.port, ca: server.caPem, request: encodeRequest(request), isHeadRequest: request.method === 'HEAD', waitMs: responseWaitMs });
}

/**
 * Sends `request` and asserts what must hold for every input whatever the response: no stored row
 * changed and no internal error was logged. Returns the response for the property's own checks.
 */
async function sendWithoutSideEffects(context: PropertyContext, request: HandshakeRequest): Promise<ExchangeResult> {
  const { server } = context.target;
  const logStart = server.logs.length;
  const before = await snapshotStore(server.running.store);

  const result = await send(context.target, request);
  context.tally?.add(responseLabel(result));

  const after = await snapshotStore(server.running.store);
  assert.deepEqual(changedTables(before, after), [], 'a handshake changed stored rows');
  assert.deepEqual(errorLogLines(server, logStart), [], 'a handshake made the server log an internal error');
  return result;
}

/**
 * Any request near a valid upgrade ends in a 101 only with the genuine credential set, and
 * otherwise in an error that docs/errors.md documents. The server responds to every request, changes no
 * stored row and logs no internal error.
 */
export function handshakeOutcomeProperty(context: PropertyContext): fc.IAsyncPropertyWithHooks<[HandshakeRequest]> {
  const credentials = handshakeCredentials(context.target);
  return fc.asyncProperty(handshakeRequestArbitrary(credentials), async (request) => {
    const result = await sendWithoutSideEffects(context, request);

    const problem = handshakeResponseProblem(encodeRequest(request), result, credentials);
    assert.equal(problem, null, `a fuzzed handshake got an undocumented response: ${problem}`);
  });
}

/**
 * The genuine device or browser credential set, with variations the docs allow (scheme case,
 * spacing, header order and case, other cookies, other subprotocols, unrelated headers), is always
 * accepted, and the server selects `portcullis.v1` exactly when it was offered.
 */
export function genuineHandshakeProperty(context: PropertyContext): fc.IAsyncPropertyWithHooks<[GenuineHandshake]> {
  const credentials = handshakeCredentials(context.target);
  return fc.asyncProperty(genuineHandshakeArbitrary(credentials), async (genuine) => {
    const result = await sendWithoutSideEffects(context, genuine.request);

    assert.equal(responseLabel(result), '101', `a genuine ${genuine.kind} handshake was rejected`);
    assert.equal(result.headers['sec-websocket-accept'], acceptValue(genuine.key), 'the accepted handshake has a wrong Sec-WebSocket-Accept');
    const expected = genuine.offersApplication ? 'portcullis.v1' : undefined;
    assert.equal(result.headers['sec-websocket-protocol'], expected, 'the server selected the wrong subprotocol');
  });
}

/** Asserts that a fresh device still connects, which shows the server survived the inputs. */
export async function assertServerServes(target: FuzzTarget): Promise<void> {
  const credentials = handshakeCredentials(target);
  const request: HandshakeRequest = {
    method: 'GET',
    target: '/ws',
    httpVersion: 'HTTP/1.1',
    headers: [
      ['Host', `localhost:${credentials.port}`],
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Version', '13'],
      ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
      ['Authorization', `Bearer ${credentials.deviceTokens.genuine}`],
      ['X-Client-Id', credentials.clientId],
    ],
  };
  const result = await send(target, request);
  assert.equal(responseLabel(result), '101', 'a valid device no longer connects after the fuzz inputs');
}
