import assert from 'node:assert/strict';
import { test } from 'node:test';

import { validateOptions } from '../../src/config/options.ts';
import {
  decideOnClose,
  decideOnRejection,
  mayRefreshNow,
  maxReconnectAfterMs,
  maxRetryAfterMs,
  parseControlFrame,
  parseRetryAfter,
  refreshDelayMs,
} from '../../src/client/policy.ts';

const closeCases: Array<[code: number, reason: string, action: string, reasonCode: string]> = [
  [4401, 'token_expired', 'refresh_then_reconnect', 'token_expired'],
  [4403, 'token_revoked', 'stop', 'token_revoked'],
  [4403, 'token_invalid', 'stop', 'token_invalid'],
  [4403, '', 'stop', 'connection_closed'],
  [4400, 'bad_frame', 'stop', 'bad_frame'],
  [4500, '', 'reconnect', 'connection_closed'],
  [4999, 'server_error', 'reconnect', 'server_error'],
  [1000, '', 'reconnect', 'connection_closed'],
  [1001, 'server shutting down', 'reconnect', 'going_away'],
  [1006, '', 'reconnect', 'connection_lost'],
  [1008, 'policy', 'reconnect', 'policy'],
  [1009, '', 'reconnect', 'connection_closed'],
  [1011, 'server_error', 'reconnect', 'server_error'],
];

for (const [code, reason, action, reasonCode] of closeCases) {
  test(`close ${code} ${JSON.stringify(reason)} means ${action}`, () => {
    assert.deepEqual(decideOnClose(code, reason), { action, reason: reasonCode });
  });
}

test('free-text close reason is not passed on', () => {
  assert.equal(decideOnClose(4403, 'Bearer eyJhbGciOi.x.y').reason, 'connection_closed');
});

const rejectionCases: Array<[status: number, code: string | null, fresh: boolean, action: string]> = [
  [401, 'token_expired', false, 'refresh_then_reconnect'],
  [401, 'token_expired', true, 'stop'],
  [401, 'token_invalid', true, 'stop'],
  [403, 'token_revoked', false, 'stop'],
  [403, 'client_id_mismatch', true, 'stop'],
  [400, 'token_in_url', false, 'stop'],
  [404, 'not_found', false, 'stop'],
  [429, null, false, 'reconnect'],
  [500, 'server_error', true, 'reconnect'],
  [503, null, true, 'reconnect'],
];

for (const [status, code, fresh, action] of rejectionCases) {
  test(`handshake ${status} ${code ?? '(no code)'} with ${fresh ? 'fresh' : 'cached'} token means ${action}`, () => {
    const decision = decideOnRejection({ status, code, retryAfterMs: null }, fresh);
    assert.equal(decision.action, action);
    assert.equal(decision.reason, code ?? 'handshake_rejected');
  });
}

test('retry-after sets the earliest reconnect', () => {
  assert.deepEqual(decideOnRejection({ status: 503, code: null, retryAfterMs: 7000 }, false), { action: 'reconnect', reason: 'handshake_rejected', notBeforeMs: 7000 });
});

test('retry-after parses seconds and dates', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('5', now), 5000);
  assert.equal(parseRetryAfter(' 0 ', now), 0);
  assert.equal(parseRetryAfter('Tue, 01 Jan 2030 00:00:12 GMT', now), 12_000);
  assert.equal(parseRetryAfter('Mon, 31 Dec 2029 23:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter('99999', now), maxRetryAfterMs);
  assert.equal(parseRetryAfter('soon', now), null);
  assert.equal(parseRetryAfter('-3', now), null);
  assert.equal(parseRetryAfter(undefined, now), null);
});

test('refresh is due margin before expiry', () => {
  const timing = { receivedAtMs: 0, expiresAtMs: 600_000 };
  assert.equal(refreshDelayMs(timing, 60, 0), 540_000);
  assert.equal(refreshDelayMs(timing, 60, 500_000), 40_000);
  assert.equal(refreshDelayMs(timing, 60, 590_000), 0);
});

test('margin longer than lifetime waits a tenth of it', () => {
  const timing = { receivedAtMs: 1_000, expiresAtMs: 31_000 };
  assert.equal(refreshDelayMs(timing, 60, 1_000), 3_000);
  assert.equal(refreshDelayMs(timing, 28, 1_000), 3_000);
  assert.equal(refreshDelayMs(timing, 20, 1_000), 10_000);
});

test('expiring frame waits for minimum age', () => {
  const timing = { receivedAtMs: 0, expiresAtMs: 30_000 };
  assert.equal(mayRefreshNow(timing, 100), false);
  assert.equal(mayRefreshNow(timing, 3_000), true);
});

test('control frames are recognised', () => {
  assert.deepEqual(parseControlFrame('{"type":"welcome","connection_id":"c1","sub":"s","client_id":"d","expires_at":10,"scope":"subscribe:users/{sub}/#"}'), {
    type: 'welcome',
    welcome: { connectionId: 'c1', sub: 's', clientId: 'd', expiresAt: 10, scope: 'subscribe:users/{sub}/#' },
  });
  assert.equal(parseControlFrame('{"type":"welcome","connection_id":"c1","sub":"s","client_id":"d","expires_at":10}')?.type, 'welcome', 'a welcome without scope');
  assert.deepEqual(parseControlFrame('{"type":"expiring","expires_at":10}'), { type: 'expiring', expiresAt: 10 });
  assert.deepEqual(parseControlFrame('{"type":"auth_ok","expires_at":11}'), { type: 'auth_ok', expiresAt: 11 });
});

for (const text of ['hello', '{"type":"chat","expires_at":1}', '{"type":"message","channel":"a","data":1,"publisher":{},"timestamp":1}', '{"type":"auth_ok"}', '{"type":"welcome","expires_at":1}', '{not json', 'null', '[1]']) {
  test(`application frame ${JSON.stringify(text)} is not control`, () => {
    assert.equal(parseControlFrame(text), null);
  });
}

const reconnectCases: Array<[text: string, afterMs: number]> = [
  ['{"type":"reconnect","after_ms":4211}', 4211],
  ['{"type":"reconnect","after_ms":0}', 0],
  ['{"type":"reconnect","after_ms":250.9}', 250],
  ['{"type":"reconnect","after_ms":-5}', 0],
  ['{"type":"reconnect","after_ms":600001}', maxReconnectAfterMs],
  ['{"type":"reconnect","after_ms":1e999}', maxReconnectAfterMs],
];

for (const [text, afterMs] of reconnectCases) {
  test(`reconnect hint ${text} waits ${afterMs} ms`, () => {
    assert.deepEqual(parseControlFrame(text), { type: 'reconnect', afterMs });
  });
}

for (const text of ['{"type":"reconnect"}', '{"type":"reconnect","after_ms":"500"}', '{"type":"reconnect","after_ms":null}', '{"type":"reconnect","after_ms":[500]}', '{"type":"reconnect","after_ms":true}']) {
  test(`reconnect hint ${text} is ignored`, () => {
    assert.equal(parseControlFrame(text), null);
  });
}

test('hint limit covers the largest drain window', () => {
  assert.equal(validateOptions({ drainWindowMs: maxReconnectAfterMs }).drainWindowMs, maxReconnectAfterMs);
  assert.throws(() => validateOptions({ drainWindowMs: maxReconnectAfterMs + 1 }), /drainWindowMs/);
});
