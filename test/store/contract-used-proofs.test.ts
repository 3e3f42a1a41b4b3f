// Store contract: the record of used DPoP proofs, run against every backend in `storeBackends`.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { epochSeconds } from '../../src/store/database.ts';
import { pruneUsedProofs, recordProofUse } from '../../src/store/used-proofs.ts';
import { storeBackends, useFreshStore } from '../support/store-backends.ts';

for (const backend of storeBackends) {
  describe(`used proofs on ${backend.name}`, () => {
    const opened = useFreshStore(backend);

    test('first use true, then false', async () => {
      const expiresAt = epochSeconds() + 90;

      assert.equal(await recordProofUse(opened.store, 'dpop:key-a:jti-1', expiresAt), true);
      assert.equal(await recordProofUse(opened.store, 'dpop:key-a:jti-1', expiresAt), false);
      assert.equal(await recordProofUse(opened.store, 'dpop:key-a:jti-2', expiresAt), true);
    });

    test('concurrent uses get one true', async () => {
      const expiresAt = epochSeconds() + 90;

      const results = await Promise.all(Array.from({ length: 8 }, () => recordProofUse(opened.store, 'dpop:key-b:jti-1', expiresAt)));

      assert.equal(results.filter(Boolean).length, 1);
    });

    test('expired entry is taken over', async () => {
      await recordProofUse(opened.store, 'dpop:key-c:jti-1', epochSeconds() - 1);

      assert.equal(await recordProofUse(opened.store, 'dpop:key-c:jti-1', epochSeconds() + 90), true);
      assert.equal(await recordProofUse(opened.store, 'dpop:key-c:jti-1', epochSeconds() + 90), false);
    });

    test('prune deletes expired entries only', async () => {
      await recordProofUse(opened.store, 'dpop:key-d:old', epochSeconds() - 5);
      await recordProofUse(opened.store, 'dpop:key-d:live', epochSeconds() + 90);

      assert.ok(await pruneUsedProofs(opened.store) >= 1);
      const keys = (await opened.store.selectFrom('used_proofs').select('key').where('key', 'like', 'dpop:key-d:%').execute()).map((row) => row.key);
      assert.deepEqual(keys, ['dpop:key-d:live']);
    });
  });
}
