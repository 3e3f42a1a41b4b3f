// The scanner behind the run's final log check: it must find a secret in every spelling a log line
// can give it, and stay quiet on the lines a real server writes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { LeakScanner, spellings } from '../support/log-hygiene.ts';
import { rawHandshake } from '../support/raw-handshake.ts';
import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';

const secret = 'pw with spaces & "quotes"/+=';

describe('recorded secrets', () => {
  const scanner = new LeakScanner([secret, 'kZ3p9QmYtR2vW8xL']);

  for (const spelling of spellings(secret)) {
    test(`found when spelled ${JSON.stringify(spelling)}`, () => {
      const line = `{"event":"login.failed","detail":"x${spelling}y"}`;
      const leaks = scanner.scan('unit', line);
      assert.equal(leaks.length, 1, `the spelling ${spelling} went unnoticed`);
      assert.doesNotMatch(leaks[0].finding, /pw with/, 'the report repeats the secret');
    });
  }

  test('found inside a JSON string', () => {
    const line = JSON.stringify({ event: 'x', message: `saw ${secret}` });
    assert.equal(scanner.scan('unit', line).length, 1, 'the JSON-escaped secret went unnoticed');
  });

  test('found when cut short', () => {
    const token = 'kZ3p9QmYtR2vW8xLq7Hn4Jd6Fs1Ga0Pb5Tc8Ue2Vw';
    const cut = new LeakScanner([token]);
    const line = `{"event":"x","client_id":"${token.slice(5, 29)}"}`;
    assert.equal(cut.scan('unit', line).length, 1, 'a 24-character fragment of the secret went unnoticed');
  });

  test('a line without a secret passes', () => {
    assert.deepEqual(scanner.scan('unit', '{"event":"handshake.accepted","client_id":"sensor-7"}'), []);
  });
});

describe('secret shapes', () => {
  const scanner = new LeakScanner([]);
  const shapes: Array<[string, string]> = [
    ['JWT', 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzZW5zb3ItNyJ9.c2lnbmF0dXJl'],
    ['PEM private key', '-----BEGIN PRIVATE KEY-----\\nMIGHAgEA'],
    ['private JWK member', '{\\"kty\\":\\"EC\\",\\"d\\":\\"Jm5cbSSxR2pcI3F1bWlkYWRlcw\\"}'],
    ['Authorization credential', 'authorization: Bearer Zm9vYmFyYmF6cXV4MTIz'],
    ['session cookie', 'cookie: __Host-portcullis-session=Q2hlY2tUaGlz'],
  ];

  for (const [name, text] of shapes) {
    test(`a ${name} is found though no test recorded it`, () => {
      const leaks = scanner.scan('unit', `{"event":"x","text":"${text}"}`);
      assert.ok(leaks.some((leak) => leak.finding === name), `a ${name} went unnoticed`);
    });
  }

  test('words that follow Bearer in an error description pass', () => {
    const line = '{"event":"handshake.rejected","error_description":"Send the token as Bearer credentials."}';
    assert.deepEqual(scanner.scan('unit', line), []);
  });
});

describe('a real server', () => {
  let server: TestServer;
  let token: string;
  let device: { client_id: string; client_secret: string };

  before(async () => {
    server = await startTestServer();
    device = await addDevice(server, 'hygiene-sensor');
    token = await deviceToken(server, device);
  });

  after(() => server.close());

  test('token in the URL not logged', async () => {
    const response = await rawHandshake({
      port: server.port,
      ca: server.caPem,
      path: `/ws?access_token=${token}`,
      headers: { 'X-Client-Id': device.client_id, Authorization: `Bearer ${token}` },
    });
    assert.equal(response.status, 400, 'a token in the URL was not refused');

    const scanner = new LeakScanner([token, device.client_secret]);
    assert.ok(server.logs.length > 0, 'the server wrote no log line');
    const leaks = server.logs.flatMap((line) => scanner.scan('server', line));
    assert.deepEqual(leaks, [], 'a secret reached the server log');
  });
});
