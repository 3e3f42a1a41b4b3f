// Shared parts of the three peer servers: their settings, the listener, token verification and the
// control route through which the load process triggers a revocation.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

import { importJWK, jwtVerify, type CryptoKey, type JWK, type JWTPayload } from 'jose';

import { exitWithHarness, sendToHarness } from '../child.ts';
import { peerTokenAudience, peerTokenIssuer } from '../config.ts';

/** Settings of one peer process, passed as JSON in its first argument. */
export interface PeerSettings {
  /** Serve plain HTTP instead of HTTPS, as behind a TLS-terminating proxy. */
  plain: boolean;
  certFile: string;
  keyFile: string;
  /** Public key of the tokens to accept, or null for raw-ws, which does not authenticate. */
  publicJwk: JWK | null;
  /** The process exits by itself after this long. */
  deadlineMs: number;
}

/** Ping interval of the peers, the same as Portcullis's default `--heartbeat-interval`. */
export const heartbeatIntervalMs = 25_000;

/** Largest message the peers accept, the same as Portcullis's default `--max-payload`. */
export const maxPayloadBytes = 64 * 1024;

/** Reads the settings from the command line. */
export function readPeerSettings(): PeerSettings {
  return JSON.parse(process.argv[2] ?? '{}') as PeerSettings;
}

/** Creates the peer's HTTP or HTTPS server with the benchmark certificate. */
export function createPeerServer(settings: PeerSettings, onRequest: http.RequestListener): http.Server {
  if (settings.plain) {
    return http.createServer(onRequest);
  }
  return https.createServer({ cert: fs.readFileSync(settings.certFile), key: fs.readFileSync(settings.keyFile) }, onRequest);
}

/**
 * Returns a verifier of the ES256 access tokens the harness signs, with the checks a careful team
 * writes by hand: algorithm allow-list, issuer, audience, type and required claims.
 */
export async function createTokenVerifier(publicJwk: JWK): Promise<(token: string) => Promise<JWTPayload>> {
  const key = await importJWK(publicJwk, 'ES256') as CryptoKey;
  return async (token) => {
    const { payload } = await jwtVerify(token, key, {
      algorithms: ['ES256'],
      issuer: peerTokenIssuer,
      audience: peerTokenAudience,
      typ: 'at+jwt',
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
    });
    return payload;
  };
}

/**
 * Handles the control routes the load process calls: `GET /bench/ping` to open a kept-alive
 * connection beforehand, and `POST /bench/revoke?sub=<subject>`, which closes the subject's
 * connections through `revoke` and responds with how many it closed.
 */
export function controlRoutes(revoke: (subject: string | null) => number): http.RequestListener {
  return (request, response) => {
    const url = new URL(request.url ?? '/', 'http://peer');
    if (url.pathname === '/bench/ping') {
      response.writeHead(204).end();
      return;
    }
    if (url.pathname === '/bench/revoke' && request.method === 'POST') {
      const closed = revoke(url.searchParams.get('sub'));
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ closed }));
      return;
    }
    response.writeHead(404).end();
  };
}

/** Listens on a free port of 127.0.0.1 and reports the port and this process's pid to the harness. */
export async function listenAndReport(server: http.Server, settings: PeerSettings, cleanup: () => Promise<void> | void): Promise<void> {
  exitWithHarness(settings.deadlineMs, cleanup);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await sendToHarness({ type: 'ready', port: (server.address() as AddressInfo).port, pid: process.pid });
}
