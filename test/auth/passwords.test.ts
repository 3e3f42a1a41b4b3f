import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Algorithm, hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';

import { dummyVerify, hashPassword, validatePasswordPolicy, verifyPassword } from '../../src/auth/passwords.ts';

describe('hashPassword and verifyPassword', () => {
  test('round trip accepts same password', async () => {
    const hash = await hashPassword('correct horse battery staple');

    assert.equal(await verifyPassword(hash, 'correct horse battery staple'), true);
  });

  test('wrong password is rejected', async () => {
    const hash = await hashPassword('correct horse battery staple');

    assert.equal(await verifyPassword(hash, 'correct horse battery stapler'), false);
  });

  test('PHC string names OWASP parameters', async () => {
    const hash = await hashPassword('correct horse battery staple');

    assert.ok(hash.startsWith('$argon2id$v=19$m=19456,t=2,p=1$'), hash);
  });

  test('fresh salt for each hash', async () => {
    const first = await hashPassword('correct horse battery staple');
    const second = await hashPassword('correct horse battery staple');

    assert.notEqual(first, second);
  });

  const malformed = [
    ['empty', ''],
    ['not PHC', 'hunter2'],
    ['bcrypt', '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW'],
    ['bad base64', '$argon2id$v=19$m=19456,t=2,p=1$!!!$!!!'],
    ['truncated', '$argon2id$v=19$m=19456,t=2,p=1$'],
  ] as const;

  for (const [name, hash] of malformed) {
    test(`malformed hash resolves false: ${name}`, async () => {
      assert.equal(await verifyPassword(hash, 'correct horse battery staple'), false);
    });
  }

  // Real hashes of the right password, so only the parameter guard can reject them. Each is just
  // past one ceiling, because a hash far past it would exhaust the test host if the guard regressed.
  const outOfBounds = [
    ['argon2i', { algorithm: Algorithm.Argon2i, memoryCost: 1024, timeCost: 1 }],
    ['memory above 256 MiB', { memoryCost: 262_144 + 8, timeCost: 1 }],
    ['more than 10 passes', { memoryCost: 64, timeCost: 11 }],
    ['more than 8 lanes', { memoryCost: 8 * 9, timeCost: 1, parallelism: 9 }],
  ] as const;

  for (const [name, options] of outOfBounds) {
    test(`out-of-bounds hash rejected: ${name}`, async () => {
      const hash = await argon2Hash('correct horse battery staple', options);
      assert.equal(await argon2Verify(hash, 'correct horse battery staple'), true);

      assert.equal(await verifyPassword(hash, 'correct horse battery staple'), false);
    });
  }
});

describe('dummyVerify', () => {
  test('always resolves false', async () => {
    assert.equal(await dummyVerify('correct horse battery staple'), false);
    assert.equal(await dummyVerify(''), false);
  });
});

describe('validatePasswordPolicy', () => {
  const cases: Array<[name: string, password: string, reason: RegExp | null]> = [
    ['8 ASCII characters', 'abcdefgh', null],
    ['7 ASCII characters', 'abcdefg', /at least 8 characters/],
    ['empty', '', /at least 8 characters/],
    ['8 emoji, 16 UTF-16 units', '🔑'.repeat(8), null],
    ['4 emoji, 8 UTF-16 units', '🔑'.repeat(4), /at least 8 characters/],
    ['1024 bytes', 'a'.repeat(1024), null],
    ['1025 bytes', 'a'.repeat(1025), /at most 1024 bytes/],
    ['513 characters, 1026 bytes', 'é'.repeat(513), /at most 1024 bytes/],
    ['NUL inside', 'abcd\0efgh', /NUL/],
    ['lone surrogate', 'abcdefgh\uD800', /valid Unicode/],
  ];

  for (const [name, password, reason] of cases) {
    test(`policy ${reason === null ? 'accepts' : 'rejects'} ${name}`, () => {
      const actual = validatePasswordPolicy(password);

      if (reason === null) {
        assert.equal(actual, null);
        return;
      }

      assert.match(actual ?? '', reason);
    });
  }
});
