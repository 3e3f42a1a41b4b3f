import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, test } from 'node:test';

import { scriptedLogin } from '../support/browser-login.ts';
import { rawHandshake, type RawResponse } from '../support/raw-handshake.ts';
import { runCli, startTestServer, type CliResult, type TestServer } from '../support/server.ts';
import { commandsChannel, deviceRoundTrip, openBrowserSocket, openDeviceSocket, type Frame } from '../support/websocket.ts';

// Markers survive URL encoding and JSON escaping unchanged, so a leak in any of those forms is found.
const runId = crypto.randomBytes(8).toString('hex').toUpperCase();
const passwordMarker = `CANARY-PASSWORD-${runId}`;
const wrongPasswordMarker = `CANARY-WRONG-PASSWORD-${runId}`;
// Published data is meant to reach subscribers, so it is checked against logs and CLI output only.
const publishedDataMarker = `CANARY-PUBLISHED-DATA-${runId}`;
const username = 'canary-user';
const deviceId = 'canary-device';

/** A value that must never leave the server except where it is meant to. */
interface Secret {
  name: string;
  value: string;
}

/** Text that left the server: a log line, an error body, a close reason, CLI output. */
interface Channel {
  name: string;
  text: string;
}

const secrets: Secret[] = [];
const publishedData: Secret = { name: 'published data marker', value: publishedDataMarker };
const logChannels: Channel[] = [];
const clientChannels: Channel[] = [];
const cliChannels: Channel[] = [];
let deviceAddOutput = '';
let deliveredMessage: Frame | undefined;
let binaryError: Frame | undefined;
let server: TestServer | undefined;
let serverStopped = false;

function addSecret(name: string, value: string | undefined): void {
  assert.ok(value, `the run produced no ${name}`);
  secrets.push({ name, value });
  // A JWT leaked in part is still a leak, and its signature is the part no one else can make.
  const segments = value.split('.');
  if (segments.length === 3 && segments[0].startsWith('eyJ')) {
    secrets.push({ name: `${name} (signature)`, value: segments[2] });
  }
}

function addCli(name: string, result: CliResult): void {
  cliChannels.push({ name: `${name} stdout`, text: result.stdout }, { name: `${name} stderr`, text: result.stderr });
}

function httpChannel(name: string, response: RawResponse | { status: number; headers: Headers; body: string }): Channel {
  const headers = response.headers instanceof Headers ? [...response.headers] : Object.entries(response.headers);
  return { name, text: `${response.status}\n${headers.map(([key, value]) => `${key}: ${value}`).join('\n')}\n\n${response.body}` };
}

/** Returns the names of `values` found in each channel, as `channel: value` lines. `values` defaults to every secret. */
function leaks(channels: Channel[], values: Secret[] = secrets): string[] {
  return channels.flatMap((channel) => values
    .filter((secret) => channel.text.includes(secret.value))
    .map((secret) => `${channel.name}: ${secret.name}`));
}

async function readResponse(response: Response): Promise<{ status: number; headers: Headers; body: string }> {
  return { status: response.status, headers: response.headers, body: await response.text() };
}

/** Follows `/login` to the login form as a browser would, submits it and returns the form's response. */
async function submitLoginForm(target: TestServer, user: string, password: string): Promise<Response> {
  const cookies = new Map<string, string>();
  const cookieHeader = () => [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  const get = async (url: string) => {
    const response = await target.fetch(new URL(url, target.url), { headers: { cookie: cookieHeader() } });
    for (const header of response.headers.getSetCookie()) {
      const [pair] = header.split(';');
      const separator = pair.indexOf('=');
      cookies.set(pair.slice(0, separator).trim(), pair.slice(separator + 1).trim());
    }
    return response;
  };

  let response = await get('/login');
  for (let hop = 0; hop < 10 && response.status >= 300 && response.status < 400; hop += 1) {
    response = await get(response.headers.get('location')!);
  }
  const page = await response.text();
  const csrfToken = /name="csrf_token" value="([^"]+)"/.exec(page)?.[1];
  const action = /action="([^"]+)"/.exec(page)?.[1];
  assert.ok(csrfToken, `the login flow ended on a page without the login form (status ${response.status})`);
  assert.ok(action, `the login flow ended on a page without the login form (status ${response.status})`);

  return target.fetch(new URL(action, target.url), {
    method: 'POST',
    headers: { cookie: cookieHeader(), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf_token: csrfToken, username: user, password }).toString(),
  });
}

/** Reads every token-like value the auth server stored for this run, while the rows still exist. */
async function collectStoredSecrets(target: TestServer): Promise<void> {
  const store = target.running.store;

  const signingKeys = await store.selectFrom('signing_keys').select('private_jwk').execute();
  assert.ok(signingKeys.length > 0);
  signingKeys.forEach((row, index) => addSecret(`signing key ${index} d`, (JSON.parse(row.private_jwk) as { d?: string }).d));

  const serverSecrets = await store.selectFrom('secrets').select(['name', 'value']).execute();
  serverSecrets.forEach((row) => addSecret(`server secret ${row.name}`, row.value));

  const sessions = await store.selectFrom('browser_sessions').select('refresh_token').execute();
  assert.equal(sessions.length, 1, 'the login stored one browser session');
  sessions.forEach((row, index) => addSecret(`browser session refresh token ${index}`, row.refresh_token));

  // Opaque OAuth artefacts are stored under their own value as id.
  const artefacts = await store.selectFrom('oidc_payloads').select(['model', 'id'])
    .where('model', 'in', ['RefreshToken', 'AuthorizationCode', 'Session']).execute();
  assert.ok(artefacts.some((row) => row.model === 'RefreshToken'), 'the auth server stored the refresh token');
  artefacts.forEach((row) => addSecret(`${row.model} ${row.id.slice(0, 4)}…`, row.id));
}

async function runCanaryPath(target: TestServer): Promise<void> {
  const password = `horse ${passwordMarker} staple`;
  const usersAdd = await runCli(target.dataDir, ['users', 'add', username, '--password-stdin'], `${password}\n`);
  assert.equal(usersAdd.code, 0, usersAdd.stderr);
  addCli('users add', usersAdd);
  addSecret('password marker', passwordMarker);
  addSecret('wrong password marker', wrongPasswordMarker);

  const devicesAdd = await runCli(target.dataDir, ['devices', 'add', deviceId]);
  assert.equal(devicesAdd.code, 0, devicesAdd.stderr);
  deviceAddOutput = devicesAdd.stdout;
  cliChannels.push({ name: 'devices add stderr', text: devicesAdd.stderr });
  const device = JSON.parse(devicesAdd.stdout) as { client_id: string; client_secret: string };
  addSecret('device client secret', device.client_secret);
  addSecret('device Basic credentials', Buffer.from(`${device.client_id}:${device.client_secret}`).toString('base64'));

  const failedLogin = await readResponse(await submitLoginForm(target, username, `horse ${wrongPasswordMarker} staple`));
  assert.equal(failedLogin.status, 401);
  assert.match(failedLogin.body, /Invalid username or password/);
  clientChannels.push(httpChannel('failed login page', failedLogin));

  const session = await scriptedLogin(target, username, password);
  addSecret('browser access token (session cookie)', session.sessionToken);
  addSecret('CSRF token', session.csrfToken);

  const basic = (secret: string) => `Basic ${Buffer.from(`${device.client_id}:${secret}`).toString('base64')}`;
  const tokenRequest = (secret: string) => target.fetch(`${target.url}/oauth/token`, {
    method: 'POST',
    headers: { authorization: basic(secret), 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  });
  const wrongSecret = await readResponse(await tokenRequest(`${device.client_secret.slice(0, -4)}AAAA`));
  assert.equal(wrongSecret.status, 401);
  assert.equal((JSON.parse(wrongSecret.body) as { error: string }).error, 'invalid_client');
  clientChannels.push(httpChannel('token response to a wrong client secret', wrongSecret));
  const issued = await tokenRequest(device.client_secret);
  assert.equal(issued.status, 200);
  const deviceTokens = await issued.json() as { access_token: string; refresh_token?: string };
  addSecret('device access token', deviceTokens.access_token);
  if (deviceTokens.refresh_token) {
    addSecret('device refresh token', deviceTokens.refresh_token);
  }

  const browserSocket = await openBrowserSocket(target, session);
  const deviceSocket = await openDeviceSocket(target, { clientId: deviceId, accessToken: deviceTokens.access_token });
  deliveredMessage = await deviceRoundTrip(deviceSocket, { note: publishedDataMarker });
  // The server replies to a binary frame with an error frame whose text it chooses, which the leak checks cover.
  deviceSocket.socket.send(Buffer.from('binary'));
  binaryError = await deviceSocket.nextFrameWhere((frame) => frame.type === 'error', 'the error frame for a binary frame');
  await deviceSocket.close();

  const tokenInUrl = await rawHandshake({
    port: target.port,
    ca: target.caPem,
    path: `/ws?access_token=${encodeURIComponent(deviceTokens.access_token)}`,
    headers: { 'X-Client-Id': deviceId },
  });
  assert.equal(tokenInUrl.status, 400);
  assert.equal(tokenInUrl.json?.error, 'token_in_url');
  clientChannels.push(httpChannel('handshake response to a token in the URL', tokenInUrl));

  await collectStoredSecrets(target);

  const logout = await readResponse(await target.fetch(`${target.url}/logout`, {
    method: 'POST',
    headers: { cookie: session.cookieHeader, 'x-csrf-token': session.csrfToken },
  }));
  assert.equal(logout.status, 200);
  clientChannels.push(httpChannel('logout response', logout));

  // Logout revokes the session's grant, which closes its live socket.
  const browserClose = await browserSocket.waitForClose();
  assert.equal(browserClose.code, 4403);
  assert.equal(browserClose.reason, 'token_revoked');
  clientChannels.push({ name: 'browser close reason', text: browserClose.reason });

  const afterLogout = await readResponse(await target.fetch(`${target.url}/session`, { headers: { cookie: session.cookieHeader } }));
  assert.equal(afterLogout.status, 401);
  clientChannels.push(httpChannel('session response after logout', afterLogout));

  const revokedHandshake = await rawHandshake({
    port: target.port,
    ca: target.caPem,
    headers: { Cookie: session.cookieHeader, Origin: target.url, 'Sec-WebSocket-Protocol': `portcullis.v1, portcullis.csrf.${session.csrfToken}` },
  });
  assert.equal(revokedHandshake.json?.error, 'token_revoked');
  clientChannels.push(httpChannel('handshake response to the logged-out cookie', revokedHandshake));

  addCli('devices list', await runCli(target.dataDir, ['devices', 'list', '--json']));
  addCli('keys list', await runCli(target.dataDir, ['keys', 'list', '--json']));

  await target.close();
  serverStopped = true;
  clientChannels.push({ name: 'frames sent to the browser', text: browserSocket.received.join('\n') });
  clientChannels.push({ name: 'frames sent to the device', text: deviceSocket.received.join('\n') });

  target.logs.forEach((line, index) => logChannels.push({ name: `log line ${index} (${(JSON.parse(line) as { event?: string }).event})`, text: line }));
}

// A safety stop for a socket that never opens or closes.
before(async () => {
  server = await startTestServer();
  await runCanaryPath(server);
}, { timeout: 180_000 });

after(async () => {
  if (server && !serverStopped) {
    await server.close();
  }
});

test('the run logged every step it checks', () => {
  const events = logChannels.map((channel) => JSON.parse(channel.text) as Record<string, unknown>);
  const seen = (event: string, field?: string, value?: unknown) => events.some((line) => line.event === event && (field === undefined || line[field] === value));

  assert.ok(seen('login.failed', 'username', username));
  assert.ok(seen('login.succeeded', 'username', username));
  assert.ok(seen('handshake.accepted', 'kind', 'browser'));
  assert.ok(seen('handshake.accepted', 'kind', 'device'));
  assert.ok(seen('handshake.rejected', 'code', 'token_in_url'));
  assert.ok(seen('handshake.rejected', 'code', 'token_revoked'));
  assert.ok(seen('session.revoked', 'reason', 'logout'));
});

test('published data reaches the subscriber', () => {
  assert.ok(deliveredMessage, 'the run received no message');
  assert.equal(deliveredMessage.channel, commandsChannel(deviceId));
  assert.deepEqual(deliveredMessage.data, { note: publishedDataMarker });
  assert.deepEqual(deliveredMessage.publisher, { client_id: deviceId, sub: deviceId });
  // The raw frame text contains the marker verbatim, so a log line that serialised the data would contain it too.
  const deviceFrames = clientChannels.find((channel) => channel.name === 'frames sent to the device');
  assert.ok(deviceFrames?.text.includes(publishedDataMarker));
});

test('binary frame gets an error frame', () => {
  assert.ok(binaryError, 'the run received no error frame');
  assert.equal(binaryError.id, null);
  assert.equal(binaryError.code, 'binary_not_supported');
  assert.equal(typeof binaryError.description, 'string');
});

test('no server log line contains a secret', () => {
  assert.ok(logChannels.length > 0);
  assert.deepEqual(leaks(logChannels), []);
});

test('no server log line contains published data', () => {
  assert.deepEqual(leaks(logChannels, [publishedData]), []);
});

test('no error body, close reason or frame contains a secret', () => {
  assert.deepEqual(leaks(clientChannels), []);
});

test('the CLI prints no secret except the new device secret from devices add', () => {
  const deviceSecret = secrets.find((secret) => secret.name === 'device client secret')!.value;

  assert.ok(deviceAddOutput.includes(deviceSecret));
  assert.deepEqual(leaks(cliChannels, [...secrets, publishedData]), []);
});
