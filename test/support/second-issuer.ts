// An OAuth 2.0 authorization server that has nothing to do with Portcullis: its own oidc-provider
// instance, its own RSA keys and its own certificate authority. Tests point a gateway at it with
// --issuer to show that the gateway trusts any standard issuer through its JWKS.
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, { errors } from 'oidc-provider';
import { Agent, fetch as undiciFetch } from 'undici';

import { loadTlsMaterial } from '../../src/tls/dev-ca.ts';
import { rememberSecret } from './capture.ts';
import { freePort, temporaryDataDir } from './server.ts';

/** A client registered at the second issuer. */
export interface IssuerClient {
  client_id: string;
  client_secret: string;
  /** Scopes the issuer puts in this client's access tokens. */
  scope: string;
}

/** A running second issuer. */
export interface SecondIssuer {
  /** Issuer identifier, `https://localhost:<port>`. */
  url: string;
  /** Path of the PEM CA that signed the issuer's certificate. */
  caFile: string;
  /** The private signing keys, active first, as published (public parts) in the JWKS. */
  keys: JWK[];
  /** Requests a client-credentials access token for `resource`. */
  token(client: IssuerClient, resource: string): Promise<string>;
  /** Publishes `keys` from now on; the active key is the first. */
  rotate(keys: JWK[]): Promise<void>;
  /** Requests for the JWKS so far. */
  readonly jwksRequests: number;
  /** While true, the JWKS responds with 503. */
  failJwks: boolean;
  /** Stops listening; `start` listens again on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** Generates an RS256 signing key with a `kid`, as a private JWK. */
export async function generateRsaJwk(kid: string): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...await exportJWK(privateKey), kid, alg: 'RS256', use: 'sig' };
}

/**
 * Starts the second issuer on a free loopback port. Tokens for every resource in `audiences` are
 * RFC 9068 JWTs signed with RS256; the client's registered scope is granted in full.
 */
export async function startSecondIssuer(clients: IssuerClient[], audiences: string[], settings: { dpop?: boolean } = {}): Promise<SecondIssuer> {
  const dataDir = temporaryDataDir();
  const tls = await loadTlsMaterial({ dataDir, certFile: null, keyFile: null });
  const port = await freePort();
  const url = `https://localhost:${port}`;
  let keys = [await generateRsaJwk('second-issuer-1')];

  const buildProvider = () => new Provider(url, {
    clients: clients.map((client) => ({
      client_id: client.client_id,
      client_secret: client.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: client.scope,
    })),
    jwks: { keys: keys as any },
    scopes: [...new Set(clients.flatMap((client) => client.scope.split(' ')))],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // Off to play an issuer that ignores DPoP proofs and issues bearer tokens.
      dPoP: { enabled: settings.dpop ?? true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => audiences[0],
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource, client) => {
          if (!audiences.includes(resource)) {
            throw new errors.InvalidTarget('unknown resource');
          }
          return {
            scope: clients.find((candidate) => candidate.client_id === client?.clientId)?.scope ?? '',
            audience: resource,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });

  let provider = buildProvider();
  const state = { jwksRequests: 0, failJwks: false };
  const server = https.createServer({ cert: tls.cert, key: tls.key }, (request, response) => {
    if (request.url === '/jwks') {
      state.jwksRequests += 1;
      if (state.failJwks) {
        response.writeHead(503).end();
        return;
      }
    }
    provider.callback()(request, response);
  });
  const listen = () => new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  await listen();

  const caFile = tls.caFile ?? path.join(dataDir, 'ca.pem');
  const dispatcher = new Agent({ connect: { ca: fs.readFileSync(caFile, 'utf8') } });

  return {
    url,
    caFile,
    get keys() {
      return keys;
    },
    get jwksRequests() {
      return state.jwksRequests;
    },
    get failJwks() {
      return state.failJwks;
    },
    set failJwks(value: boolean) {
      state.failJwks = value;
    },
    async token(client, resource) {
      const response = await undiciFetch(`${url}/token`, {
        method: 'POST',
        dispatcher,
        headers: {
          authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: client.scope }).toString(),
      });
      const body = await response.json() as { access_token?: string; error?: string };
      if (!body.access_token) {
        throw new Error(`the second issuer refused the token request: ${body.error}`);
      }
      rememberSecret(body.access_token);
      return body.access_token;
    },
    async rotate(next) {
      keys = next;
      provider = buildProvider();
    },
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
    start: listen,
  };
}
