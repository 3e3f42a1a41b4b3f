// Property-based attacks on an open connection: generated frame sequences on an authenticated device
// connection over real TLS, and the channel protocol's parser in process. Each property runs a fixed
// number of inputs from a fixed seed, so a failure repeats. PORTCULLIS_FUZZ_SEED sets another seed.
// `npm run fuzz` runs the same properties with many more inputs.
import { after, before, test } from 'node:test';

import fc from 'fast-check';

import { frameContext, frameOutcomeProperty, frameParserProperty } from './fuzz/frame-properties.ts';
import { testParameters } from './fuzz/fuzz-seed.ts';
import { startFuzzTarget, type FuzzTarget } from './fuzz/fuzz-target.ts';
import { assertServerServes } from './fuzz/handshake-properties.ts';

let target: FuzzTarget;

before(async () => {
  target = await startFuzzTarget();
});

after(async () => {
  await target?.close();
});

test('fuzz: protocol parser on any text', () => {
  fc.assert(frameParserProperty(frameContext(target)), testParameters(1000));
});

test('fuzz: frame sequences end in a documented close or reply', async () => {
  await fc.assert(frameOutcomeProperty({ target }), testParameters(150));
  await assertServerServes(target);
});
