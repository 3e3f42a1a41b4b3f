// In-process properties of the handshake guard: its parsers and checks return a defined result for
// any header value, method and request target, and never throw.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';

import fc from 'fast-check';

import type { ErrorCode } from '../../../src/errors.ts';
import { clientIdCheck } from '../../../src/gateway/guard/client-id.ts';
import { credentialsCheck, sessionCookieValues } from '../../../src/gateway/guard/credentials.ts';
import { originCheck, serializeOrigin } from '../../../src/gateway/guard/origin.ts';
import { subprotocolCheck } from '../../../src/gateway/guard/subprotocol.ts';
import { tokenInUrlCheck } from '../../../src/gateway/guard/token-in-url.ts';
import { websocketRequestCheck } from '../../../src/gateway/guard/websocket-request.ts';
import { parseOfferedProtocols, type HandshakeCheck, type HandshakeState } from '../../../src/gateway/handshake.ts';
import { plainValue } from './handshake-arbitraries.ts';

const allowedOrigin = 'https://localhost:8443';

/**
 * The codes each synchronous check may return: those of the guard table in docs/security-model.md,
 * and `bad_handshake` from the subprotocol check for an offer that is not an HTTP token.
 */
const checkCodes: Array<[HandshakeCheck, ReadonlyArray<ErrorCode>]> = [
  [websocketRequestCheck, ['upgrade_required', 'bad_handshake']],
  [tokenInUrlCheck, ['token_in_url']],
  [credentialsCheck, ['ambiguous_credentials', 'token_missing', 'token_invalid']],
  [subprotocolCheck, ['bad_handshake', 'subprotocol_required']],
  [originCheck([allowedOrigin]), ['origin_not_allowed']],
  [clientIdCheck, ['client_id_mismatch']],
];

/** Header names the guard reads, in several spellings, and any other token. */
const headerName = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('Authorization', 'Cookie', 'Origin', 'Sec-WebSocket-Protocol', 'X-Client-Id', 'Sec-WebSocket-Key', 'Sec-WebSocket-Version', 'Upgrade', 'X-Forwarded-Proto', 'cookie', 'AUTHORIZATION') },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 8 }) },
);

/** A value near what the guard looks for, or any string at all. */
const headerValue = fc.oneof(
  fc.constantFrom('Bearer abc.def.ghi', '__Host-portcullis-session=abc', 'portcullis.v1, portcullis.csrf.x', allowedOrigin, 'websocket', '13', 'dGhlIHNhbXBsZSBub25jZQ=='),
  fc.tuple(fc.constantFrom('Bearer ', '__Host-portcullis-session=', 'portcullis.v1,', 'https://', ''), plainValue).map(([prefix, rest]) => prefix + rest),
  fc.string({ unit: 'binary', maxLength: 60 }),
);

/** Builds the parts of an `IncomingMessage` that the checks read, the way Node fills them. */
function fakeRequest(method: string, url: string, lines: Array<[string, string]>): IncomingMessage {
  const headers: Record<string, string> = {};
  for (const [name, value] of lines) {
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]}${key === 'cookie' ? '; ' : ', '}${value}` : value;
  }
  return {
    method,
    url,
    headers,
    rawHeaders: lines.flat(),
    socket: { encrypted: true, remoteAddress: '127.0.0.1' },
  } as unknown as IncomingMessage;
}

function createState(request: IncomingMessage): HandshakeState | null {
  let url: URL;
  try {
    url = new URL(request.url ?? '', 'https://gateway.invalid');
  } catch {
    return null;
  }
  return { request, url, peerAddress: '127.0.0.1', kind: null, token: null, scheme: null, offeredProtocols: parseOfferedProtocols(request), verified: null };
}

function checkOrigin(value: string): void {
  const origin = serializeOrigin(value);
  assert.equal(typeof origin, 'string', 'serializeOrigin returned a non-string');
  if (origin === '') {
    return;
  }
  assert.equal(origin, new URL(origin).origin, `serializeOrigin(${JSON.stringify(value)}) is not a serialized origin`);
  assert.equal(serializeOrigin(origin), origin, `serializeOrigin is not idempotent on ${JSON.stringify(origin)}`);
}

function checkParsers(request: IncomingMessage, state: HandshakeState): void {
  for (const offer of state.offeredProtocols) {
    assert.notEqual(offer, '', 'parseOfferedProtocols returned an empty offer');
    assert.ok(!offer.includes(','), `parseOfferedProtocols returned ${JSON.stringify(offer)}, which contains a comma`);
    assert.equal(offer, offer.trim(), `parseOfferedProtocols returned ${JSON.stringify(offer)}, which is not trimmed`);
  }
  for (const value of sessionCookieValues(state)) {
    assert.ok((request.headers.cookie ?? '').includes(value), 'sessionCookieValues returned a value that is not in the Cookie header');
  }
}

function checkResults(state: HandshakeState): void {
  for (const [check, codes] of checkCodes) {
    const result = check.run(state);
    assert.ok(!(result instanceof Promise), `check ${check.name} became asynchronous`);
    assert.ok(result === undefined || codes.includes(result), `check ${check.name} returned ${String(result)}`);
  }
  // RFC 6750 section 2.1: a bearer token is one run of non-space characters.
  if (state.kind === 'device' && state.token !== null) {
    assert.ok(!state.token.includes(' '), 'the credentials check took a bearer token with a space');
  }
}

/**
 * For any method, target and header lines, the guard's parsers return well-formed values and each
 * synchronous check returns nothing or one of its documented codes, without throwing.
 */
export function guardParsersProperty(): fc.IPropertyWithHooks<[string, string, Array<[string, string]>]> {
  const method = fc.oneof(fc.constantFrom('GET', 'POST', 'get'), fc.string({ maxLength: 6 }));
  const target = fc.oneof(fc.constantFrom('/ws', '/ws?access_token=x', '/ws?a=eyJa.b.c', '//x', 'http://[', '/%E0%A4%A'), fc.string({ unit: 'binary', maxLength: 40 }));
  return fc.property(method, target, fc.array(fc.tuple(headerName, headerValue), { maxLength: 8 }), (requestMethod, url, lines) => {
    lines.forEach(([, value]) => checkOrigin(value));

    const request = fakeRequest(requestMethod, url, lines);
    const state = createState(request);
    if (state === null) {
      return;
    }
    checkParsers(request, state);
    checkResults(state);
  });
}
