// Handshakes with the genuine device or browser credential set and only the variations that
// docs/protocol.md allows, each of which the server must accept.
import fc from 'fast-check';

import type { HandshakeCredentials, HandshakeRequest } from './handshake-arbitraries.ts';

/** A handshake that must be accepted, with what its response must echo. */
export interface GenuineHandshake {
  kind: 'device' | 'browser';
  request: HandshakeRequest;
  /** The `Sec-WebSocket-Key` sent, from which the `Sec-WebSocket-Accept` value is derived. */
  key: string;
  /** True when the request offered `portcullis.v1`, which the server must then select. */
  offersApplication: boolean;
}

const tokenChars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz";

/** Subprotocols other than the application one and the CSRF offer. */
const otherSubprotocols = fc.uniqueArray(
  fc.string({ unit: fc.constantFrom(...tokenChars), minLength: 1, maxLength: 12 }).filter((offer) => offer !== 'portcullis.v1' && !offer.startsWith('portcullis.csrf.')),
  { maxLength: 3 },
);

/** Headers without a meaning for the handshake, and a `Cookie` without the session cookie. */
const unrelatedHeaders = fc.uniqueArray(
  fc.constantFrom<[string, string]>(
    ['User-Agent', 'fuzz/1.0 (property test)'],
    ['Accept-Language', 'de-CH, en;q=0.5'],
    ['Cache-Control', 'no-cache'],
    ['Pragma', 'no-cache'],
    ['X-Request-Id', '5f0c7a9e'],
    // Compression is off by default, so `ws` ignores the offer.
    ['Sec-WebSocket-Extensions', 'permessage-deflate; client_max_window_bits'],
  ),
  { maxLength: 3, selector: ([name]) => name },
);

/** Benign query parameters: no credential name and nothing that looks like a JWT. */
const benignTarget = fc.oneof(
  fc.constant('/ws'),
  fc.string({ unit: fc.constantFrom(...'abcxyz0129'), minLength: 1, maxLength: 8 }).map((value) => `/ws?channel=${value}`),
);

const nameCase = fc.constantFrom('as is', 'lower', 'upper');

function applyNameCase(name: string, style: string): string {
  if (style === 'lower') {
    return name.toLowerCase();
  }
  return style === 'upper' ? name.toUpperCase() : name;
}

function withApplication(others: string[], at: number): string[] {
  const position = at % (others.length + 1);
  return [...others.slice(0, position), 'portcullis.v1', ...others.slice(position)];
}

function deviceLines(credentials: HandshakeCredentials) {
  return fc.record({
    scheme: fc.constantFrom('Bearer', 'bearer', 'BEARER'),
    gap: fc.integer({ min: 1, max: 3 }),
    trailing: fc.integer({ min: 0, max: 2 }),
    offers: fc.option(fc.tuple(otherSubprotocols, fc.nat()), { nil: null }),
    origin: fc.option(fc.constantFrom('https://evil.example', 'null', 'http://device.local'), { nil: null }),
  }).map(({ scheme, gap, trailing, offers, origin }) => {
    const lines: Array<[string, string]> = [
      ['Authorization', `${scheme}${' '.repeat(gap)}${credentials.deviceTokens.genuine}${' '.repeat(trailing)}`],
      ['X-Client-Id', credentials.clientId],
    ];
    // A device that offers subprotocols must offer portcullis.v1 among them.
    const protocols = offers === null ? [] : withApplication(offers[0], offers[1]);
    if (protocols.length > 0) {
      lines.push(['Sec-WebSocket-Protocol', protocols.join(', ')]);
    }
    if (origin !== null) {
      lines.push(['Origin', origin]);
    }
    return { kind: 'device' as const, lines, offersApplication: protocols.length > 0 };
  });
}

function browserLines(credentials: HandshakeCredentials) {
  const otherCookies = fc.uniqueArray(fc.constantFrom('theme=dark', 'lang=de', 'consent=yes'), { maxLength: 2 });
  return fc.record({
    cookies: otherCookies,
    cookieAt: fc.nat(),
    origin: fc.constantFrom(credentials.origin, credentials.origin.toUpperCase()),
    offers: otherSubprotocols,
    applicationAt: fc.nat(),
    csrfFirst: fc.boolean(),
  }).map(({ cookies, cookieAt, origin, offers, applicationAt, csrfFirst }) => {
    const session = `__Host-portcullis-session=${credentials.sessionTokens.genuine}`;
    const position = cookieAt % (cookies.length + 1);
    const cookieHeader = [...cookies.slice(0, position), session, ...cookies.slice(position)].join('; ');
    const csrf = `portcullis.csrf.${credentials.csrfToken}`;
    const protocols = withApplication(offers, applicationAt);
    const lines: Array<[string, string]> = [
      ['Cookie', cookieHeader],
      ['Origin', origin],
      ['Sec-WebSocket-Protocol', (csrfFirst ? [csrf, ...protocols] : [...protocols, csrf]).join(', ')],
    ];
    return { kind: 'browser' as const, lines, offersApplication: true };
  });
}

/** Genuine device and browser handshakes with allowed variations, in shuffled header order. */
export function genuineHandshakeArbitrary(credentials: HandshakeCredentials): fc.Arbitrary<GenuineHandshake> {
  return fc.record({
    credential: fc.oneof(deviceLines(credentials), browserLines(credentials)),
    unrelated: unrelatedHeaders,
    key: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((bytes) => Buffer.from(bytes).toString('base64')),
    target: benignTarget,
    nameCase,
  }).chain(({ credential, unrelated, key, target, nameCase: style }) => {
    const lines: Array<[string, string]> = [
      ['Host', `localhost:${credentials.port}`],
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Version', '13'],
      ['Sec-WebSocket-Key', key],
      ...credential.lines,
      ...unrelated,
    ].map(([name, value]): [string, string] => [applyNameCase(name, style), value]);

    return fc.shuffledSubarray(lines, { minLength: lines.length, maxLength: lines.length }).map((shuffled) => ({
      kind: credential.kind,
      request: { method: 'GET', target, httpVersion: 'HTTP/1.1', headers: shuffled },
      key,
      offersApplication: credential.offersApplication,
    }));
  });
}
