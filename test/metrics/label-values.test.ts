// Label values that a client can influence fall back to `other`, so a scrape cannot grow without bound.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { closeCodeLabel, errorCodeLabel, grantTypeLabel, oauthErrorLabel, reasonLabel } from '../../src/metrics/label-values.ts';

test('known values pass', () => {
  assert.equal(grantTypeLabel('client_credentials'), 'client_credentials');
  assert.equal(grantTypeLabel('urn:ietf:params:oauth:grant-type:device_code'), 'urn:ietf:params:oauth:grant-type:device_code');
  assert.equal(oauthErrorLabel('invalid_grant'), 'invalid_grant');
  assert.equal(errorCodeLabel('token_invalid'), 'token_invalid');
  assert.equal(closeCodeLabel(4403), '4403');
  assert.equal(closeCodeLabel(1006), '1006');
  assert.equal(reasonLabel('device_removed'), 'device_removed');
});

test('unknown values become other', () => {
  assert.equal(grantTypeLabel('made_up_grant'), 'other');
  assert.equal(grantTypeLabel(undefined), 'other');
  assert.equal(grantTypeLabel('__proto__'), 'other');
  assert.equal(oauthErrorLabel('x'.repeat(100)), 'other');
  assert.equal(errorCodeLabel('toString'), 'other');
  assert.equal(closeCodeLabel(4999), 'other');
  assert.equal(closeCodeLabel('1000'), 'other');
  assert.equal(reasonLabel('Device Removed'), 'other');
  assert.equal(reasonLabel('a'.repeat(41)), 'other');
});
