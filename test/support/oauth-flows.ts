// OAuth flows run for real against a test server, for tests that need tokens other than a device's
// client-credentials access token: device-flow grants with refresh tokens, and the gateway client's
// authorization-code flow with an ID token.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { decodeJwt } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';

import { rememberSecret } from './capture.ts';
import { runServerCli, type TestServer } from './server.ts';

export const deviceCodeGrantType = 'urn:ietf:params:oauth:grant-type:device_code';
export const gatewayClientId = 'portcullis-gateway';

/** Credentials of a confidential client: a device, or the gateway's own backend client. */
export interface ClientCredentials {
  client_id: string;
  client_secret: string;
}

/** Status, content type and JSON body of one response of an OAuth endpoint. */
export interface OauthResponse {
  status: number;
  contentType: string;
  body: Record<string, unknown>;
}

/** The tokens of one grant. */
export interface IssuedGrant {
  client: ClientCredentials;
  accessToken: string;
  refreshToken: string;
  grantId: string;
}

/** Makes undici's fetch trust the server's development CA over `dispatcher`, without following redirects. */
export function fetchThrough(dispatcher: Agent): typeof fetch {
  return ((input: any, init?: any) => undiciFetch(input, { redirect: 'manual', ...init, dispatcher })) as unknown as typeof fetch;
}

/** Posts a form to an OAuth endpoint with `client_secret_basic`, over `fetchFn` (default: the server's pool). */
export async function postOauthForm(server: TestServer, endpoint: string, form: Record<string, string>, client: ClientCredentials, fetchFn = server.fetch): Promise<OauthResponse> {
  const pair = `${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`;
  const response = await fetchFn(`${server.url}${endpoint}`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(pair).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  const body = await response.json() as Record<string, unknown>;
  for (const field of ['access_token', 'refresh_token', 'id_token', 'device_code']) {
    rememberSecret(typeof body[field] === 'string' ? body[field] as string : null);
  }
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', body };
}

/** Presents `refreshToken` at the token endpoint as `client`. */
export function redeemRefreshToken(server: TestServer, client: ClientCredentials, refreshToken: string, fetchFn = server.fetch): Promise<OauthResponse> {
  return postOauthForm(server, '/oauth/token', { grant_type: 'refresh_token', refresh_token: refreshToken }, client, fetchFn);
}

/** Reads the access and refresh tokens of a successful token response. */
export function tokensOf(response: OauthResponse): { accessToken: string; refreshToken: string } {
  assert.equal(response.status, 200, `token request failed: ${JSON.stringify(response.body)}`);
  assert.equal(typeof response.body.access_token, 'string', 'the token response has no access token');
  assert.equal(typeof response.body.refresh_token, 'string', 'the token response has no refresh token');
  return { accessToken: response.body.access_token as string, refreshToken: response.body.refresh_token as string };
}

/** Runs the device authorization grant for `device`, approved for `username` through `portcullis devices approve`. */
export async function approveDevice(server: TestServer, device: ClientCredentials, username: string): Promise<IssuedGrant> {
  const authorization = await postOauthForm(server, '/oauth/device/authorize', {}, device);
  assert.equal(authorization.status, 200, `device authorization failed: ${JSON.stringify(authorization.body)}`);
  const { device_code: deviceCode, user_code: userCode } = authorization.body as { device_code: string; user_code: string };

  const approval = await runServerCli(server, ['devices', 'approve', userCode, '--user', username]);
  assert.equal(approval.code, 0, approval.stderr);

  const tokens = tokensOf(await postOauthForm(server, '/oauth/token', { grant_type: deviceCodeGrantType, device_code: deviceCode }, device));
  return { client: device, ...tokens, grantId: decodeJwt(tokens.accessToken).grant_id as string };
}

/** Reads the gateway client's secret from the server's store, as an attacker with a copy of the database would. */
export async function gatewayClientCredentials(server: TestServer): Promise<ClientCredentials> {
  const { value } = await server.running.store.selectFrom('secrets').select('value').where('name', '=', 'gateway_client_secret').executeTakeFirstOrThrow();
  rememberSecret(value);
  return { client_id: gatewayClientId, client_secret: value };
}

/**
 * Follows an authorization request through the real login form and its redirects, keeping cookies,
 * and returns the code from the redirect to the callback, which is not followed.
 */
async function authorizeWithLogin(server: TestServer, authorizeUrl: URL, username: string, password: string): Promise<string> {
  const cookies = new Map<string, string>();
  const send = async (target: string | URL, init: RequestInit = {}) => {
    const cookie = [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    const response = await server.fetch(new URL(target, server.url), { ...init, headers: { ...init.headers as Record<string, string>, cookie } });
    for (const header of response.headers.getSetCookie()) {
      const [pair] = header.split(';');
      cookies.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1));
    }
    return response;
  };

  let response = await send(authorizeUrl);
  for (let hop = 0; hop < 10; hop += 1) {
    if (response.status === 200) {
      const page = await response.text();
      const csrfToken = /name="csrf_token" value="([^"]+)"/.exec(page)?.[1] ?? '';
      const action = /action="([^"]+)"/.exec(page)?.[1] ?? '';
      const form = new URLSearchParams({ csrf_token: csrfToken, username, password }).toString();
      response = await send(action, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form });
      continue;
    }

    const location = new URL(response.headers.get('location') ?? '', server.url);
    await response.body?.cancel();
    const code = location.pathname === '/login/callback' ? location.searchParams.get('code') : null;
    if (code) {
      rememberSecret(code);
      return code;
    }
    response = await send(location);
  }
  throw new Error(`the authorization request did not reach the callback (last status ${response.status})`);
}

/**
 * Runs the authorization-code flow of the gateway's own client with `scope=openid` for `username`
 * and redeems the code. The gateway's `/login` requests no `openid` scope, so this is how an ID token
 * for a browser user comes about.
 */
export async function gatewayCodeFlow(server: TestServer, username: string, password: string): Promise<{ client: ClientCredentials; refreshToken: string; idToken: string }> {
  const client = await gatewayClientCredentials(server);
  const verifier = crypto.randomBytes(32).toString('base64url');
  const redirectUri = `${server.url}/login/callback`;

  const authorizeUrl = new URL('/oauth/authorize', server.url);
  authorizeUrl.search = new URLSearchParams({
    client_id: gatewayClientId, response_type: 'code', redirect_uri: redirectUri, scope: 'openid', resource: `${server.url}/ws`,
    code_challenge: crypto.hash('sha256', verifier, 'base64url'), code_challenge_method: 'S256', state: crypto.randomUUID(),
  }).toString();
  const code = await authorizeWithLogin(server, authorizeUrl, username, password);

  const tokens = await postOauthForm(server, '/oauth/token', { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier }, client);
  assert.equal(typeof tokens.body.refresh_token, 'string', 'the code exchange returned no refresh token');
  assert.equal(typeof tokens.body.id_token, 'string', 'the code exchange returned no ID token');
  return { client, refreshToken: tokens.body.refresh_token as string, idToken: tokens.body.id_token as string };
}
