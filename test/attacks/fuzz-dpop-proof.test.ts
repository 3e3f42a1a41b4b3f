// Property-based attacks on the DPoP proof verifier: any header value, and proofs built from valid
// parts with one part mutated. Each input either passes or fails with a ProofError, never another
// exception, and a mutated proof never passes. Fixed seed, so a failure repeats.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { before, test } from 'node:test';

import fc from 'fast-check';

import { dpopAlgorithms } from '../../src/auth/dpop.ts';
import { accessTokenHash, normalizedHtu, ProofError, verifyProof, type ProofExpectations } from '../../src/gateway/dpop/proof.ts';
import { generateProofKey, makeProof, type ProofKey } from '../support/dpop.ts';
import { testParameters } from './fuzz/fuzz-seed.ts';

const htu = 'https://gateway.example/ws';
const accessToken = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJmdXp6In0.c2lnbmF0dXJl';

let key: ProofKey;

before(async () => {
  key = await generateProofKey();
});

function expectations(): ProofExpectations {
  const now = Math.floor(Date.now() / 1000);
  return { htm: 'GET', htu, accessToken, algorithms: dpopAlgorithms, notBefore: now - 90, notAfter: now + 30 };
}

/** Verifies a proof and returns whether it passed; any exception other than ProofError fails the property. */
async function passes(proof: string): Promise<boolean> {
  try {
    await verifyProof(proof, expectations());
    return true;
  } catch (error) {
    assert.ok(error instanceof ProofError, `verifyProof threw ${String(error)}`);
    return false;
  }
}

test('fuzz: any DPoP header value is rejected cleanly', async () => {
  const segment = fc.string({ unit: fc.constantFrom(...'ABCDEFabcdef0123456789-_=+/.{}"'.split('')), maxLength: 80 });
  const values = fc.oneof(fc.string({ maxLength: 300 }), fc.tuple(segment, segment, segment).map((parts) => parts.join('.')));

  await fc.assert(fc.asyncProperty(values, async (value) => {
    assert.equal(await passes(value), false);
  }), testParameters(1000));
});

test('fuzz: a valid proof with one claim mutated is rejected', async () => {
  const mutations = fc.oneof(
    fc.record({ htm: fc.constantFrom('POST', 'get', 'HEAD', '', 'GET ') }),
    fc.record({ htu: fc.constantFrom('wss://gateway.example/ws', 'https://gateway.example/ws/', 'https://gateway.example:8443/ws', 'https://Gateway.example.evil/ws', 'https://gateway.example/WS') }),
    fc.record({ ath: fc.string({ minLength: 1, maxLength: 60 }) }),
    fc.record({ iat: fc.oneof(fc.integer({ min: -1e9, max: -200 }), fc.integer({ min: 60, max: 1e9 })).map((offset) => Math.floor(Date.now() / 1000) + offset) }),
  );

  await fc.assert(fc.asyncProperty(mutations, async (mutation) => {
    const proof = await makeProof(key, { htm: 'GET', htu, ath: accessTokenHash(accessToken), ...mutation });
    assert.equal(await passes(proof), false, JSON.stringify(mutation));
  }), testParameters(200));
});

test('fuzz: a valid proof with a flipped byte is rejected', async () => {
  const proof = await makeProof(key, { htm: 'GET', htu, ath: accessTokenHash(accessToken) });
  assert.equal(await passes(proof), true);

  await fc.assert(fc.asyncProperty(fc.nat({ max: proof.length - 1 }), fc.constantFrom(...'ABCabc019-_'.split('')), async (position, replacement) => {
    fc.pre(proof[position] !== replacement && proof[position] !== '.');
    const mutated = proof.slice(0, position) + replacement + proof.slice(position + 1);
    // A change in the last base64url character can leave the decoded bytes equal.
    fc.pre(!sameDecodedBytes(proof, mutated));
    assert.equal(await passes(mutated), false);
  }), testParameters(300));
});

function sameDecodedBytes(a: string, b: string): boolean {
  const decode = (value: string) => value.split('.').map((part) => Buffer.from(part, 'base64url').toString('hex')).join('.');
  return crypto.timingSafeEqual(Buffer.from(crypto.hash('sha256', decode(a))), Buffer.from(crypto.hash('sha256', decode(b))));
}

test('htu normalization accepts RFC 3986 forms only', () => {
  const expected = 'https://gateway.example/ws';
  for (const same of ['https://gateway.example/ws', 'HTTPS://Gateway.Example/ws', 'https://gateway.example:443/ws', 'https://gateway.example/ws?x=1#f']) {
    assert.equal(normalizedHtu(same), expected, same);
  }
  for (const malformed of ['https:gateway.example/ws', 'https://gateway.example\\ws', ' https://gateway.example/ws', 'https://gateway.example/ws\t',
    'https://gate\nway.example/ws', 'https://gateway.example:0443/ws', 'https://gateway.example/./ws', 'https://gateway.example/a/../ws',
    'https://user@gateway.example/ws', 'https://gateway.example/w\u0001s', 'ftp://gateway.example/ws', '/ws', 42]) {
    assert.equal(normalizedHtu(malformed), null, String(malformed));
  }
  assert.equal(normalizedHtu('https://[::1]:8443/ws'), 'https://[::1]:8443/ws');
});
