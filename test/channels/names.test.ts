// Channel names, filters and the permissions read from a token's `scope` claim, without a server.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { filterCovers, maxChannelBytes, maxChannelSegments, parseChannelFilter, parseChannelName } from '../../src/channels/names.ts';
import { mayPublish, maySubscribe, permissionsFromScope, type ScopeIdentity } from '../../src/channels/permissions.ts';

const device: ScopeIdentity = { clientId: 'meter-1', sub: 'meter-1' };

/** Builds a channel name of `count` one-letter segments. */
function segments(count: number): string {
  return Array.from({ length: count }, () => 'a').join('/');
}

/** Parses a filter that the test expects to be valid. */
function filter(value: string): string[] {
  const parsed = parseChannelFilter(value);
  assert.ok(parsed, `${value} is not a valid filter`);
  return parsed;
}

/** Parses a channel name that the test expects to be valid. */
function name(value: string): string[] {
  const parsed = parseChannelName(value);
  assert.ok(parsed, `${value} is not a valid channel name`);
  return parsed;
}

test('limits match the protocol', () => {
  assert.equal(maxChannelSegments, 8);
  assert.equal(maxChannelBytes, 200);
});

test('valid channel names split into segments', () => {
  const cases: Array<[string, string[]]> = [
    ['devices/meter-1/telemetry', ['devices', 'meter-1', 'telemetry']],
    ['a', ['a']],
    ['users/bob_2/notice', ['users', 'bob_2', 'notice']],
    ['0-9/_/-', ['0-9', '_', '-']],
    [segments(8), Array.from({ length: 8 }, () => 'a')],
  ];

  for (const [value, expected] of cases) {
    assert.deepEqual(parseChannelName(value), expected, value);
  }
});

test('name of 200 bytes is valid', () => {
  const value = `${'a'.repeat(100)}/${'b'.repeat(99)}`;

  assert.equal(Buffer.byteLength(value), 200);
  assert.deepEqual(parseChannelName(value), ['a'.repeat(100), 'b'.repeat(99)]);
});

test('invalid channel names are rejected', () => {
  const cases: Array<[string, unknown]> = [
    ['upper case', 'devices/Meter-1/telemetry'],
    ['empty string', ''],
    ['empty segment', 'devices//telemetry'],
    ['leading slash', '/devices/meter-1'],
    ['trailing slash', 'devices/meter-1/'],
    ['nine segments', segments(9)],
    ['201 bytes', `${'a'.repeat(100)}/${'b'.repeat(100)}`],
    ['one segment of 201 bytes', 'a'.repeat(201)],
    ['one-segment wildcard', 'devices/*/telemetry'],
    ['trailing wildcard', 'devices/meter-1/#'],
    ['wildcard inside a segment', 'devices/meter*/telemetry'],
    ['dot', 'devices/meter.1'],
    ['space', 'devices/meter 1'],
    ['non-ASCII letter', 'devices/zähler'],
    ['placeholder left unreplaced', 'devices/{client_id}'],
    ['not a string', 42],
    ['null', null],
  ];

  for (const [label, value] of cases) {
    assert.equal(parseChannelName(value), null, label);
  }
});

test('valid filters accept wildcards', () => {
  const cases: Array<[string, string[]]> = [
    ['devices/#', ['devices', '#']],
    ['#', ['#']],
    ['devices/*/telemetry', ['devices', '*', 'telemetry']],
    ['*/*/#', ['*', '*', '#']],
    ['devices/meter-1/commands', ['devices', 'meter-1', 'commands']],
    [`${segments(7)}/#`, [...Array.from({ length: 7 }, () => 'a'), '#']],
  ];

  for (const [value, expected] of cases) {
    assert.deepEqual(parseChannelFilter(value), expected, value);
  }
});

test('invalid filters are rejected', () => {
  const cases: Array<[string, unknown]> = [
    ['# not last', 'devices/#/telemetry'],
    ['# twice', '#/#'],
    ['# inside a segment', 'devices/meter#'],
    ['* inside a segment', 'devices/meter-*'],
    ['upper case', 'Devices/#'],
    ['empty segment', 'devices//#'],
    ['nine segments', `${segments(8)}/#`],
    ['201 bytes', `${'a'.repeat(199)}/#`],
    ['empty string', ''],
    ['not a string', ['devices', '#']],
  ];

  for (const [label, value] of cases) {
    assert.equal(parseChannelFilter(value), null, label);
  }
});

test('filterCovers decides coverage', () => {
  // [permission pattern, requested filter or name, covered]
  const cases: Array<[string, string, boolean]> = [
    ['devices/meter-1/#', 'devices/meter-1/telemetry', true],
    ['devices/meter-1/#', 'devices/meter-1', true],
    ['devices/meter-1/#', 'devices/meter-1/a/b/c', true],
    ['devices/meter-1/#', 'devices/meter-1/#', true],
    ['devices/meter-1/#', 'devices/meter-1/*', true],
    ['devices/meter-1/#', 'devices/meter-2/telemetry', false],
    ['devices/meter-1/#', 'devices/#', false],
    ['devices/meter-1/#', 'devices/*/telemetry', false],
    ['devices/meter-1/#', 'devices', false],
    ['devices/#', 'devices/#', true],
    ['devices/#', 'devices/*/commands', true],
    ['devices/#', 'users/alice', false],
    ['#', 'users/alice/notice', true],
    ['#', '#', true],
    ['devices/*/commands', 'devices/meter-1/commands', true],
    ['devices/*/commands', 'devices/*/commands', true],
    ['devices/*/commands', 'devices/#', false],
    ['devices/*/commands', 'devices/meter-1/commands/urgent', false],
    ['devices/*/commands', 'devices/meter-1', false],
    ['devices/*/commands', 'devices/meter-1/telemetry', false],
    ['devices/meter-1/commands', 'devices/meter-1/commands', true],
    ['devices/meter-1/commands', 'devices/*/commands', false],
    ['devices/meter-1/commands', 'devices/meter-1/#', false],
    ['devices/meter-1/commands', 'devices/meter-1/commands/x', false],
    ['devices/meter-1/commands', 'devices/meter-1', false],
  ];

  for (const [pattern, requested, covered] of cases) {
    assert.equal(filterCovers(filter(pattern), filter(requested)), covered, `${pattern} covers ${requested}`);
  }
});

test('default device scopes grant its channels', () => {
  const permissions = permissionsFromScope('publish:devices/{client_id}/# subscribe:devices/{client_id}/commands', device);

  assert.deepEqual(permissions.publish, [['devices', 'meter-1', '#']]);
  assert.deepEqual(permissions.subscribe, [['devices', 'meter-1', 'commands']]);
  assert.equal(mayPublish(permissions, name('devices/meter-1/telemetry')), true);
  assert.equal(mayPublish(permissions, name('devices/meter-2/telemetry')), false);
  assert.equal(maySubscribe(permissions, filter('devices/meter-1/commands')), true);
  assert.equal(maySubscribe(permissions, filter('devices/meter-1/telemetry')), false);
  assert.equal(maySubscribe(permissions, filter('devices/#')), false);
  assert.equal(maySubscribe(permissions, filter('devices/*/commands')), false);
});

test('{sub} is replaced by the subject', () => {
  const permissions = permissionsFromScope('subscribe:users/{sub}/#', { clientId: 'portcullis-gateway', sub: 'alice' });

  assert.deepEqual(permissions.subscribe, [['users', 'alice', '#']]);
  assert.equal(maySubscribe(permissions, filter('users/alice/notice')), true);
  assert.equal(maySubscribe(permissions, filter('users/bob/notice')), false);
});

test('placeholder inside a segment grants nothing', () => {
  // For client `a`, `devices/{client_id}-x` would be the channels of client `a-x`.
  const permissions = permissionsFromScope('publish:site-{client_id}/status subscribe:devices/{client_id}-x/#', device);

  assert.deepEqual(permissions, { subscribe: [], publish: [] });
});

test('publish and subscribe scopes are kept apart', () => {
  const permissions = permissionsFromScope('subscribe:devices/#', device);

  assert.equal(maySubscribe(permissions, filter('devices/meter-1/telemetry')), true);
  assert.equal(mayPublish(permissions, name('devices/meter-1/telemetry')), false);
});

test('placeholder value not a segment grants nothing', () => {
  // Each value would change the pattern's shape if it were pasted in.
  const cases: Array<[string, ScopeIdentity]> = [
    ['upper-case client id', { clientId: 'Meter-1', sub: 'Meter-1' }],
    ['client id with a dot', { clientId: 'meter.1', sub: 'meter.1' }],
    ['client id with a slash', { clientId: 'meter/1', sub: 'meter/1' }],
    ['client id "#"', { clientId: '#', sub: '#' }],
    ['client id "*"', { clientId: '*', sub: '*' }],
    ['empty client id', { clientId: '', sub: '' }],
  ];

  for (const [label, identity] of cases) {
    const permissions = permissionsFromScope('publish:devices/{client_id}/# subscribe:devices/{client_id}/commands', identity);
    assert.deepEqual(permissions, { subscribe: [], publish: [] }, label);
  }
});

test('unusable {sub} spoils only its own scope', () => {
  const permissions = permissionsFromScope('subscribe:users/{sub}/# subscribe:devices/{client_id}/#', { clientId: 'meter-1', sub: 'users/bob' });

  assert.deepEqual(permissions.subscribe, [['devices', 'meter-1', '#']]);
  assert.equal(maySubscribe(permissions, filter('users/bob/notice')), false);
});

test('unknown and malformed scopes grant nothing', () => {
  const scope = [
    'gateway',
    'openid',
    'publish:',
    'subscribe:devices/#/commands',
    'publish:Devices/{client_id}',
    'publish:devices/{device_id}/#',
    'read:devices/#',
    '',
  ].join(' ');

  assert.deepEqual(permissionsFromScope(scope, device), { subscribe: [], publish: [] });
});

test('extra spaces between scopes are ignored', () => {
  const permissions = permissionsFromScope('  publish:devices/{client_id}/#   subscribe:devices/#  ', device);

  assert.deepEqual(permissions.publish, [['devices', 'meter-1', '#']]);
  assert.deepEqual(permissions.subscribe, [['devices', '#']]);
});

test('wildcard channel cannot be published to', () => {
  const permissions = permissionsFromScope('publish:devices/#', device);

  // A publish names one concrete channel, so wildcards fail name parsing before any permission check.
  assert.equal(parseChannelName('devices/*/commands'), null);
  assert.equal(parseChannelName('devices/#'), null);
  assert.equal(mayPublish(permissions, name('devices/meter-1/commands')), true);
});
