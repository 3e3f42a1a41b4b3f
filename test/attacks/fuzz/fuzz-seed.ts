import type fc from 'fast-check';

/** Seed of the fuzz properties in `npm test`, so that a failure repeats on the next run. */
const defaultSeed = 20_240_607;

/**
 * Returns the seed for the fuzz tests: PORTCULLIS_FUZZ_SEED when set to an integer, else a fixed
 * default. Throws for any other value, so a typing error does not silently fall back.
 */
export function fuzzSeed(): number {
  const value = process.env.PORTCULLIS_FUZZ_SEED;
  if (value === undefined || value === '') {
    return defaultSeed;
  }
  const seed = Number(value);
  if (!Number.isSafeInteger(seed)) {
    throw new Error(`PORTCULLIS_FUZZ_SEED must be an integer, not ${JSON.stringify(value)}`);
  }
  return seed;
}

/**
 * Parameters of one property in `npm test`: the fuzz seed, `numRuns` inputs, and the failed
 * assertion's message in the report, which fast-check leaves out by default.
 */
export function testParameters<T>(numRuns: number): fc.Parameters<T> {
  return { seed: fuzzSeed(), numRuns, includeErrorInReport: true };
}
