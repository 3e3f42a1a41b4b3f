// Upgrade requests for the handshake fuzz properties. Each starts from a valid skeleton, adds device
// or browser credentials, some of them wrong, adds unrelated headers, and then mutates header lines.
//
// Secrets only go where the server never logs them: the Authorization and Cookie headers, the
// Sec-WebSocket-Protocol offers and the query string. The server logs the path, Origin and
// X-Client-Id of rejected handshakes, so a token placed there would fail the run's log check
// without showing a fault of the server.
import fc from 'fast-check';

import { base64urlChar, tokenArbitrary, type TokenPool } from './token-arbitraries.ts';

/** One hand-written HTTP request, before encoding. */
export interface HandshakeRequest {
  method: string;
  target: string;
  httpVersion: string;
  /** Header lines in wire order, name then value. */
  headers: Array<[string, string]>;
}

/** The genuine credentials and foreign tokens the arbitraries draw from. */
export interface HandshakeCredentials {
  port: number;
  clientId: string;
  /** Ids of the devices whose tokens are among the foreign ones. */
  otherClientIds: string[];
  /** Every client id with the token that is valid for it; any other pair must be rejected. */
  validDevices: Array<{ clientId: string; accessToken: string }>;
  origin: string;
  csrfToken: string;
  /** Tokens for the Authorization header; `genuine` is the device's. */
  deviceTokens: TokenPool;
  /** Tokens for the session cookie; `genuine` is the browser session's. */
  sessionTokens: TokenPool;
}

/** Encodes a request as Node reads it: every character as one byte (latin1), CRLF line ends. */
export function encodeRequest(request: HandshakeRequest): Buffer {
  const lines = [`${request.method} ${request.target} ${request.httpVersion}`];
  for (const [name, value] of request.headers) {
    lines.push(`${name}: ${value}`);
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

const tokenChars = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** An RFC 9110 token, such as a header name or a subprotocol. */
const httpToken = fc.string({ unit: fc.constantFrom(...tokenChars), minLength: 1, maxLength: 16 });

/** Any byte as one latin1 character: control bytes, CR and LF included. */
const anyByte = fc.integer({ min: 0, max: 255 }).map((code) => String.fromCharCode(code));

/** A header value that contains no secret: mostly printable, sometimes raw bytes or non-ASCII text. */
export const plainValue = fc.oneof(
  { weight: 14, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: anyByte, maxLength: 40 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }).map((text) => Buffer.from(text, 'utf8').toString('latin1')) },
);

function skeleton(port: number): fc.Arbitrary<Array<[string, string]>> {
  return fc.tuple(
    fc.constantFrom(`localhost:${port}`, `127.0.0.1:${port}`, 'evil.example', ''),
    fc.constantFrom('Upgrade', 'upgrade', 'keep-alive, Upgrade', 'Upgrade, close'),
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
  ).map(([host, connection, key]) => [
    ['Host', host],
    ['Upgrade', 'websocket'],
    ['Connection', connection],
    ['Sec-WebSocket-Version', '13'],
    ['Sec-WebSocket-Key', Buffer.from(key).toString('base64')],
  ]);
}

function authorizationValue(credentials: HandshakeCredentials): fc.Arbitrary<string> {
  const scheme = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('Bearer', 'bearer', 'BEARER') }, { weight: 2, arbitrary: fc.constantFrom('Basic', 'Token', 'DPoP', 'Bearer:', '') });
  const gap = fc.oneof({ weight: 6, arbitrary: fc.constant(' ') }, { weight: 2, arbitrary: fc.constantFrom('  ', '\t', '') });
  const trail = fc.oneof({ weight: 6, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom(' ', '  ', ' x') });
  return fc.oneof(
    { weight: 6, arbitrary: fc.tuple(scheme, gap, tokenArbitrary(credentials.deviceTokens), trail).map((parts) => parts.join('')) },
    { weight: 1, arbitrary: plainValue },
  );
}

function clientIdValue(credentials: HandshakeCredentials): fc.Arbitrary<string> {
  const { clientId, otherClientIds } = credentials;
  return fc.oneof(
    { weight: 5, arbitrary: fc.constant(clientId) },
    { weight: 2, arbitrary: fc.constantFrom(...otherClientIds) },
    { weight: 1, arbitrary: fc.constantFrom(` ${clientId} `, `${clientId},${clientId}`, clientId.toUpperCase(), '') },
    { weight: 1, arbitrary: plainValue },
  );
}

function cookieValue(credentials: HandshakeCredentials): fc.Arbitrary<string> {
  const name = fc.oneof(
    { weight: 6, arbitrary: fc.constant('__Host-portcullis-session') },
    { weight: 1, arbitrary: fc.constantFrom(' __Host-portcullis-session', '__host-portcullis-session', '__Secure-portcullis-session') },
  );
  const token = fc.oneof(
    { weight: 2, arbitrary: fc.constant(credentials.sessionTokens.genuine) },
    { weight: 3, arbitrary: tokenArbitrary(credentials.sessionTokens) },
    { weight: 1, arbitrary: fc.constant('') },
  );
  const sessionPair = fc.tuple(name, token).map(([cookie, value]) => `${cookie}=${value}`);
  const otherPair = fc.oneof(
    fc.tuple(httpToken, fc.string({ unit: base64urlChar, maxLength: 12 })).map(([cookie, value]) => `${cookie}=${value}`),
    fc.constantFrom('novalue', '=x', '', 'a=b=c'),
  );
  // Mostly one session cookie among others, as a browser sends it; sometimes any mix.
  const onePair = fc.tuple(sessionPair, fc.array(otherPair, { maxLength: 2 }), fc.nat()).map(([session, others, at]) => {
    const pairs = [...others];
    pairs.splice(at % (others.length + 1), 0, session);
    return pairs;
  });
  const anyPairs = fc.array(fc.oneof(sessionPair, otherPair), { minLength: 1, maxLength: 3 });
  return fc.tuple(fc.oneof({ weight: 3, arbitrary: onePair }, { weight: 1, arbitrary: anyPairs }), fc.constantFrom('; ', ';', ' ; '))
    .map(([pairs, separator]) => pairs.join(separator));
}

function originValue(credentials: HandshakeCredentials): fc.Arbitrary<string> {
  const { origin, port } = credentials;
  return fc.oneof(
    { weight: 5, arbitrary: fc.constant(origin) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        'null', `${origin}/`, `${origin}/page`, origin.toUpperCase(), `https://127.0.0.1:${port}`, `http://localhost:${port}`,
        `https://localhost:${port + 1}`, `https://localhost:${port}.evil.example`, `https://user@localhost:${port}`, 'https://evil.example', '',
      ),
    },
    { weight: 1, arbitrary: plainValue },
  );
}

function subprotocolValue(credentials: HandshakeCredentials): fc.Arbitrary<string> {
  const csrf = `portcullis.csrf.${credentials.csrfToken}`;
  const offer = fc.oneof(
    { weight: 4, arbitrary: fc.constant('portcullis.v1') },
    { weight: 3, arbitrary: fc.constant(csrf) },
    { weight: 2, arbitrary: fc.tuple(fc.nat(), base64urlChar).map(([at, char]) => `${csrf.slice(0, 16 + (at % credentials.csrfToken.length))}${char}`) },
    { weight: 2, arbitrary: fc.constantFrom('portcullis.v2', 'PORTCULLIS.V1', 'portcullis.csrf.', 'portcullis.v1.', '') },
    { weight: 2, arbitrary: httpToken },
    { weight: 1, arbitrary: plainValue },
  );
  // The offers a browser sends, with at most one more, so that many inputs reach the later checks.
  const browserOffers = fc.tuple(fc.option(offer, { nil: null }), fc.nat()).map(([extra, at]) => {
    const offers = ['portcullis.v1', csrf];
    if (extra !== null) {
      offers.splice(at % 3, 0, extra);
    }
    return offers;
  });
  const offers = fc.oneof(browserOffers, fc.array(offer, { minLength: 0, maxLength: 4 }));
  return fc.tuple(offers, fc.constantFrom(', ', ',', ' , ', ',\t')).map(([list, separator]) => list.join(separator));
}

/** Header lines of the device path, the browser path, both or neither, each line possibly missing. */
function credentialLines(credentials: HandshakeCredentials): fc.Arbitrary<Array<[string, string]>> {
  const line = (name: string, value: fc.Arbitrary<string>, freq: number) => fc.option(value.map((text): [string, string] => [name, text]), { freq, nil: null });
  const device = fc.tuple(
    line('Authorization', authorizationValue(credentials), 8),
    line('X-Client-Id', clientIdValue(credentials), 8),
    line('Sec-WebSocket-Protocol', subprotocolValue(credentials), 1),
    line('Origin', originValue(credentials), 1),
  );
  const browser = fc.tuple(
    line('Cookie', cookieValue(credentials), 10),
    line('Origin', originValue(credentials), 8),
    line('Sec-WebSocket-Protocol', subprotocolValue(credentials), 8),
  );
  const present = (lines: Array<[string, string] | null>) => lines.filter((entry): entry is [string, string] => entry !== null);
  return fc.oneof(
    { weight: 4, arbitrary: device.map(present) },
    { weight: 4, arbitrary: browser.map(present) },
    { weight: 1, arbitrary: fc.tuple(device, browser).map(([first, second]) => present([...first, ...second])) },
    { weight: 1, arbitrary: fc.constant<Array<[string, string]>>([]) },
  );
}

/** Headers that are no credential but that HTTP, proxies or `ws` give a meaning. */
function noiseLine(): fc.Arbitrary<[string, string]> {
  const meaningful: Array<[string, fc.Arbitrary<string>]> = [
    ['Sec-WebSocket-Extensions', fc.constantFrom('permessage-deflate', 'permessage-deflate; client_max_window_bits', 'permessage-deflate; server_max_window_bits=7', 'x-unknown', ';;')],
    ['Content-Length', fc.constantFrom('0', '5', '-1', '1, 2', '99999999999999999999')],
    ['Transfer-Encoding', fc.constantFrom('chunked', 'gzip', 'identity', 'chunked, chunked')],
    ['Expect', fc.constantFrom('100-continue', 'fuzz')],
    ['X-Forwarded-Proto', fc.constantFrom('https', 'http', 'https, http')],
    ['X-Forwarded-For', fc.constantFrom('203.0.113.9', '127.0.0.1', 'unknown')],
    ['Sec-WebSocket-Version', fc.constantFrom('13', '8', '12', '')],
    ['Sec-WebSocket-Key', fc.constantFrom('dGhlIHNhbXBsZSBub25jZQ==', 'short', '')],
    ['Upgrade', fc.constantFrom('websocket', 'h2c', 'WebSocket')],
    ['Host', fc.constantFrom('localhost', 'evil.example')],
  ];
  return fc.oneof(
    { weight: 8, arbitrary: fc.oneof(...meaningful.map(([name, value]) => value.map((text): [string, string] => [name, text]))) },
    { weight: 5, arbitrary: fc.tuple(httpToken, plainValue) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(' X-Leading', 'X Space', '', 'X:Colon', 'X-Ünicode', 'Authorization '), plainValue) },
  );
}

/** One change to the header list; `at` picks the line modulo the list's length. */
type LineMutation =
  | { op: 'drop' | 'duplicate' | 'lower_name' | 'upper_name' | 'empty_value' | 'fold_value'; at: number }
  | { op: 'replace_value'; at: number; value: string }
  | { op: 'pad_value'; at: number; pad: string };

const lineMutation: fc.Arbitrary<LineMutation> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ op: fc.constantFrom('drop' as const, 'duplicate' as const, 'lower_name' as const, 'upper_name' as const, 'empty_value' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fold_value' as const), at: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('replace_value' as const), at: fc.nat(), value: plainValue }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('pad_value' as const), at: fc.nat(), pad: fc.constantFrom(' ', '\t', '\xa0', '\x0b') }) },
);

/** Applies the mutations in order to a copy of `headers`. */
export function mutateLines(headers: Array<[string, string]>, mutations: LineMutation[]): Array<[string, string]> {
  const lines = headers.map(([name, value]): [string, string] => [name, value]);
  for (const mutation of mutations) {
    if (lines.length === 0) {
      break;
    }
    const at = mutation.at % lines.length;
    const [name, value] = lines[at];
    switch (mutation.op) {
      case 'drop':
        lines.splice(at, 1);
        break;
      case 'duplicate':
        lines.splice(at, 0, [name, value]);
        break;
      case 'lower_name':
        lines[at] = [name.toLowerCase(), value];
        break;
      case 'upper_name':
        lines[at] = [name.toUpperCase(), value];
        break;
      case 'empty_value':
        lines[at] = [name, ''];
        break;
      case 'fold_value':
        // An obsolete line folding (RFC 9112 section 5.2), which a strict parser rejects.
        lines[at] = [name, `${value}\r\n folded`];
        break;
      case 'replace_value':
        lines[at] = [name, mutation.value];
        break;
      case 'pad_value':
        lines[at] = [name, `${mutation.pad}${value}${mutation.pad}`];
        break;
    }
  }
  return lines;
}

const credentialParameter = fc.constantFrom('access_token', 'token', 'jwt', 'auth', 'Authorization', 'bearer', 'id_token', 'refresh_token', 'x', 'channel');

function targetArbitrary(credentials: HandshakeCredentials): fc.Arbitrary<string> {
  const queryValue = fc.oneof(
    fc.string({ unit: fc.constantFrom(...'abcXYZ019-._~%=+'), maxLength: 12 }),
    tokenArbitrary(credentials.deviceTokens).map(encodeURIComponent),
  );
  const query = fc.array(fc.tuple(credentialParameter, queryValue), { minLength: 1, maxLength: 3 })
    .map((pairs) => `?${pairs.map(([name, value]) => `${name}=${value}`).join('&')}`);
  const path = fc.constantFrom('/ws', '/WS', '/ws/', '/ws/x', '//ws', '/%77s', '/ws%2F', '/ws;a', '/./ws', '/no-such-path', 'https://localhost/ws', 'ws', '/ws#part');
  return fc.oneof(
    { weight: 16, arbitrary: fc.constant('/ws') },
    { weight: 3, arbitrary: query.map((text) => `/ws${text}`) },
    { weight: 2, arbitrary: path },
  );
}

const methodArbitrary = fc.oneof(
  { weight: 30, arbitrary: fc.constant('GET') },
  { weight: 4, arbitrary: fc.constantFrom('POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'CONNECT', 'get', 'PRI', 'G\x00T') },
);

const versionArbitrary = fc.oneof(
  { weight: 30, arbitrary: fc.constant('HTTP/1.1') },
  { weight: 1, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2', 'http/1.1') },
);

/**
 * Any upgrade request near a valid one: valid skeleton, device or browser credentials (genuine,
 * changed or foreign), unrelated headers, then up to three line mutations and an optional reversal
 * of the header order.
 */
export function handshakeRequestArbitrary(credentials: HandshakeCredentials): fc.Arbitrary<HandshakeRequest> {
  return fc.record({
    method: methodArbitrary,
    target: targetArbitrary(credentials),
    httpVersion: versionArbitrary,
    skeleton: skeleton(credentials.port),
    credentials: credentialLines(credentials),
    noise: fc.oneof({ weight: 2, arbitrary: fc.constant<Array<[string, string]>>([]) }, { weight: 1, arbitrary: fc.array(noiseLine(), { minLength: 1, maxLength: 3 }) }),
    mutations: fc.oneof({ weight: 3, arbitrary: fc.constant<LineMutation[]>([]) }, { weight: 2, arbitrary: fc.array(lineMutation, { minLength: 1, maxLength: 3 }) }),
    reversed: fc.boolean(),
  }).map((parts) => {
    const lines = [...parts.skeleton, ...parts.credentials, ...parts.noise];
    const mutated = mutateLines(lines, parts.mutations);
    return {
      method: parts.method,
      target: parts.target,
      httpVersion: parts.httpVersion,
      headers: parts.reversed ? mutated.reverse() : mutated,
    };
  });
}
