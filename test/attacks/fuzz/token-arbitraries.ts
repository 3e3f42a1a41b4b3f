// Access-token values for the fuzz properties: the genuine token, tokens of other identities, real
// tokens with one part changed, and JWT-shaped garbage. Every value except the genuine token must be
// rejected wherever it is presented.
import fc from 'fast-check';

const base64urlAlphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Characters of a base64url string. */
export const base64urlChar = fc.constantFrom(...base64urlAlphabet);

/** Tokens a fuzz input may present, with the one that is valid for the connection under test. */
export interface TokenPool {
  /** The valid token of the identity under test. */
  genuine: string;
  /** Valid tokens of this server that belong to another identity or another kind of client. */
  foreign: string[];
  /** Issuer and audience of genuine tokens, so garbage can name them. */
  issuer: string;
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

function decodeSegment(segment: string): Record<string, unknown> {
  try {
    return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/** Generates a JOSE header or claim set with some of the usual fields, each valid, wrong or of the wrong type. */
function claimsArbitrary(pool: TokenPool): fc.Arbitrary<Record<string, unknown>> {
  const timestamp = fc.oneof(fc.integer({ min: 0, max: 4_102_444_800 }), fc.constantFrom('1', null, -1, 1e300, Math.floor(Date.now() / 1000)));
  return fc.record({
    iss: fc.constantFrom(pool.issuer, `${pool.issuer}/`, 'https://evil.example', ''),
    aud: fc.constantFrom(`${pool.issuer}/ws`, pool.issuer, [`${pool.issuer}/ws`], 'portcullis'),
    sub: fc.string({ maxLength: 12 }),
    client_id: fc.constantFrom('fuzz-device', 'portcullis-gateway', '', 7),
    jti: fc.string({ maxLength: 12 }),
    exp: timestamp,
    iat: timestamp,
    nbf: timestamp,
    scope: fc.constantFrom('publish:devices/#', 'subscribe:#', ''),
  }, { requiredKeys: [] });
}

function headerArbitrary(): fc.Arbitrary<Record<string, unknown>> {
  return fc.record({
    alg: fc.constantFrom('ES256', 'none', 'HS256', 'RS256', 'ES384', 'es256', ''),
    typ: fc.constantFrom('at+jwt', 'JWT', 'at+JWT', 'application/at+jwt'),
    kid: fc.string({ unit: base64urlChar, maxLength: 43 }),
    crit: fc.constant(['exp']),
  }, { requiredKeys: [] });
}

/** Three dot-separated base64url parts whose first two decode to JSON objects. */
export function jwtShapedGarbage(pool: TokenPool): fc.Arbitrary<string> {
  return fc.tuple(headerArbitrary(), claimsArbitrary(pool), fc.string({ unit: base64urlChar, maxLength: 90 }))
    .map(([header, claims, signature]) => `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}.${signature}`);
}

/** One change to a real token: a character, its length, or one of its three parts. */
type TokenMutation =
  | { kind: 'replace_char'; at: number; char: string }
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; text: string }
  | { kind: 'header'; header: Record<string, unknown> }
  | { kind: 'claims'; claims: Record<string, unknown> }
  | { kind: 'signature'; signature: string }
  | { kind: 'foreign_signature'; from: number }
  | { kind: 'case'; upper: boolean };

function mutationArbitrary(pool: TokenPool): fc.Arbitrary<TokenMutation> {
  return fc.oneof(
    fc.record({ kind: fc.constant('replace_char' as const), at: fc.nat(), char: fc.oneof(base64urlChar, fc.constantFrom('.', '=', ' ', '+', '/', '\t')) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('append' as const), text: fc.oneof(fc.string({ unit: base64urlChar, minLength: 1, maxLength: 8 }), fc.constantFrom('.', '..', '=', '.eyJ9')) }),
    fc.record({ kind: fc.constant('header' as const), header: headerArbitrary() }),
    fc.record({ kind: fc.constant('claims' as const), claims: claimsArbitrary(pool) }),
    fc.record({ kind: fc.constant('signature' as const), signature: fc.string({ unit: base64urlChar, maxLength: 90 }) }),
    fc.record({ kind: fc.constant('foreign_signature' as const), from: fc.nat() }),
    fc.record({ kind: fc.constant('case' as const), upper: fc.boolean() }),
  );
}

/**
 * Applies a mutation to `token`. A change that happens to give back the token itself yields the
 * token with one character more, so a mutated token is never the genuine one.
 */
export function mutateToken(token: string, mutation: TokenMutation, pool: TokenPool): string {
  const [header, claims, signature] = token.split('.');
  let mutated: string;
  switch (mutation.kind) {
    case 'replace_char': {
      const at = mutation.at % token.length;
      mutated = token.slice(0, at) + mutation.char + token.slice(at + 1);
      break;
    }
    case 'truncate':
      mutated = token.slice(0, mutation.at % token.length);
      break;
    case 'append':
      mutated = token + mutation.text;
      break;
    case 'header':
      mutated = `${base64url(JSON.stringify({ ...decodeSegment(header), ...mutation.header }))}.${claims}.${signature}`;
      break;
    case 'claims':
      mutated = `${header}.${base64url(JSON.stringify({ ...decodeSegment(claims), ...mutation.claims }))}.${signature}`;
      break;
    case 'signature':
      mutated = `${header}.${claims}.${mutation.signature}`;
      break;
    case 'foreign_signature': {
      const donor = pool.foreign[mutation.from % pool.foreign.length] ?? '';
      mutated = `${header}.${claims}.${donor.split('.')[2] ?? ''}`;
      break;
    }
    case 'case':
      mutated = mutation.upper ? token.toUpperCase() : token.toLowerCase();
      break;
  }
  return mutated === token ? `${token}A` : mutated;
}

/** Any token value: mostly close to a real one, sometimes the genuine token itself. */
export function tokenArbitrary(pool: TokenPool): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant(pool.genuine) },
    { weight: 5, arbitrary: mutationArbitrary(pool).map((mutation) => mutateToken(pool.genuine, mutation, pool)) },
    { weight: 2, arbitrary: fc.constantFrom(...pool.foreign) },
    { weight: 2, arbitrary: jwtShapedGarbage(pool) },
    { weight: 1, arbitrary: fc.string({ unit: base64urlChar, maxLength: 60 }) },
    // One past the 8192-character limit of the token verifier.
    { weight: 1, arbitrary: fc.constant(`${pool.genuine}${'A'.repeat(Math.max(0, 8193 - pool.genuine.length))}`) },
  );
}
