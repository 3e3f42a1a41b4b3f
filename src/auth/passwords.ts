import { randomBytes } from 'node:crypto';
import * as argon2 from '@node-rs/argon2';

// The OWASP Password Storage Cheat Sheet's minimum for Argon2id: 19 MiB of memory, 2 passes, 1 lane.
const hashOptions = Object.freeze({
  algorithm: argon2.Algorithm.Argon2id,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
});

// The library allocates whatever memory a stored hash names, so one corrupt `m=999999999` row can get
// the process killed on the next login. The ceilings leave room to raise the cost later.
const maxMemoryCostKib = 262_144;
const maxTimeCost = 10;
const maxParallelism = 8;

const minPasswordChars = 8;
const maxPasswordBytes = 1024;

let dummyHash: Promise<string> | undefined;

/**
 * Hashes a password with Argon2id (m=19456 KiB, t=2, p=1) and a fresh salt, returning a PHC string.
 * NOTE: the password is hashed without Unicode normalization, although NIST SP 800-63B recommends
 * NFKC or NFKD, so a composed and a decomposed `é` are different passwords.
 */
export async function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, hashOptions);
}

/** Checks a password against a stored PHC string, resolving false (never rejecting) when the hash is malformed or out of bounds. */
export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  if (!hasSafeParameters(hash)) {
    return false;
  }

  try {
    return await argon2.verify(hash, password);
  } catch {
    return false;
  }
}

/**
 * Spends as long as `verifyPassword` does on a real hash and resolves false, so a login for an
 * unknown username costs the same time as one for a known username.
 */
export async function dummyVerify(password: string): Promise<false> {
  await verifyPassword(await getDummyHash(), password);
  return false;
}

/** Returns null when a new password is acceptable, otherwise a plain English reason to show the user. */
export function validatePasswordPolicy(password: string): string | null {
  // NIST SP 800-63B counts each Unicode code point as one character, so an emoji counts once, not
  // as its two UTF-16 units.
  if ([...password].length < minPasswordChars) {
    return `Password must be at least ${minPasswordChars} characters long.`;
  }

  if (Buffer.byteLength(password, 'utf8') > maxPasswordBytes) {
    return `Password must be at most ${maxPasswordBytes} bytes long when encoded as UTF-8.`;
  }

  // Any tool that later reads the password as a C string would stop at the first NUL, so it would
  // hash a different password from this module.
  if (password.includes('\0')) {
    return 'Password must not contain a NUL character.';
  }

  // The binding encodes a lone surrogate as U+FFFD, so two different passwords would hash the same.
  if (/\p{Surrogate}/u.test(password)) {
    return 'Password must be valid Unicode text.';
  }

  return null;
}

function hasSafeParameters(hash: string): boolean {
  try {
    const parsed = argon2.parseOptions(hash);

    return parsed.algorithm === argon2.Algorithm.Argon2id
      && parsed.memoryCost <= maxMemoryCostKib
      && parsed.timeCost <= maxTimeCost
      && parsed.parallelism <= maxParallelism;
  } catch {
    return false;
  }
}

// Built on first use from a random, discarded password with the same options as real hashes, so
// the dummy's cost cannot drift from theirs.
// NOTE: the first unknown-username login after start-up also pays for one extra hash.
function getDummyHash(): Promise<string> {
  dummyHash ??= hashPassword(randomBytes(32).toString('base64url')).catch((error: unknown) => {
    dummyHash = undefined;
    throw error;
  });

  return dummyHash;
}
