import crypto from 'node:crypto';

import { importJWK, SignJWT, type JWK } from 'jose';

import type { Options } from '../../../src/config/options.ts';
import { scriptedLogin } from '../../support/browser-login.ts';
import { rememberSecret } from '../../support/capture.ts';
import { addDevice, addUser, deviceToken, runServerCli, startTestServer, type TestServer } from '../../support/server.ts';

/** A device with a valid access token. */
export interface FuzzDevice {
  clientId: string;
  accessToken: string;
}

/** A logged-in browser session: the cookie's token, its CSRF token and the page origin. */
export interface FuzzBrowser {
  sessionToken: string;
  csrfToken: string;
  origin: string;
}

/** A running server with one genuine credential set of each kind, for the fuzz properties. */
export interface FuzzTarget {
  server: TestServer;
  device: FuzzDevice;
  /** A second registered device, whose valid token must not pass under the first one's id. */
  otherDevice: FuzzDevice;
  /** A device removed after its token was issued, so its token is revoked. */
  removedDevice: FuzzDevice;
  /** A token for `device` signed with the server's key but expired an hour ago. */
  expiredToken: string;
  browser: FuzzBrowser;
  close(): Promise<void>;
}

const password = 'fuzzing needs a long password';

/**
 * Starts a server on loopback with two devices, a removed one and a logged-in user. Tokens live an hour, so a long
 * `npm run fuzz` does not run into their expiry, and a request whose body never arrives gets its response
 * after 3 s instead of the default 10 s. `overrides` set further options.
 */
export async function startFuzzTarget(overrides: Partial<Options> = {}): Promise<FuzzTarget> {
  const server = await startTestServer({ accessTokenTtlSeconds: 3600, handshakeTimeoutMs: 3000, ...overrides });
  try {
    const device = await registerDevice(server, 'fuzz-device');
    const otherDevice = await registerDevice(server, 'fuzz-other-device');
    const removedDevice = await registerDevice(server, 'fuzz-removed-device');
    const removal = await runServerCli(server, ['devices', 'remove', removedDevice.clientId]);
    if (removal.code !== 0) {
      throw new Error(`devices remove failed: ${removal.stderr}`);
    }
    const expiredToken = await signExpiredToken(server, device.clientId);

    await addUser(server, 'fuzz-user', password);
    const session = await scriptedLogin(server, 'fuzz-user', password);
    rememberSecret(session.sessionToken);
    rememberSecret(session.csrfToken);

    return {
      server,
      device,
      otherDevice,
      removedDevice,
      expiredToken,
      browser: { sessionToken: session.sessionToken, csrfToken: session.csrfToken, origin: server.url },
      close: () => server.close(),
    };
  } catch (error) {
    await server.close();
    throw error;
  }
}

async function registerDevice(server: TestServer, clientId: string): Promise<FuzzDevice> {
  const accessToken = await deviceToken(server, await addDevice(server, clientId));
  rememberSecret(accessToken);
  return { clientId, accessToken };
}

/** Signs a device token with the server's active key whose `exp` lies an hour in the past. */
async function signExpiredToken(server: TestServer, clientId: string): Promise<string> {
  const row = await server.running.store.selectFrom('signing_keys').selectAll().where('status', '=', 'active').executeTakeFirstOrThrow();
  const key = await importJWK(JSON.parse(row.private_jwk) as JWK, 'ES256');
  const issuedAt = Math.floor(Date.now() / 1000) - 7200;
  const token = await new SignJWT({ client_id: clientId, scope: 'publish:devices/{client_id}/#', jti: crypto.randomUUID() })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: row.kid })
    .setIssuer(server.url)
    .setAudience(`${server.url}/ws`)
    .setSubject(clientId)
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + 3600)
    .sign(key);
  rememberSecret(token);
  return token;
}

/** Severity of pino's `error` level; lines at or above it mean the server caught an internal error. */
const pinoErrorLevel = 50;

/** Returns the log lines from index `since` on that pino wrote at error level or above. */
export function errorLogLines(server: TestServer, since: number): string[] {
  return server.logs.slice(since).filter((line) => {
    try {
      return (JSON.parse(line) as { level?: number }).level! >= pinoErrorLevel;
    } catch {
      // A line that is not JSON did not come from the logger, so it is an error of its own kind.
      return true;
    }
  });
}
