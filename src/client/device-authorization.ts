// Onboarding of a device with the device authorization grant (RFC 8628): the device shows a code,
// a person approves it, and the device keeps the refresh token for `DeviceClient`.
import { setTimeout as delay } from 'node:timers/promises';

import { DpopSigner, type DpopKeyPair } from './dpop.ts';
import { PortcullisClientError } from './policy.ts';
import { TokenSource, type DeviceCredentials, type RefreshTokenStore } from './token-source.ts';

/** The codes and pages shown to the person who approves the device. */
export interface DeviceAuthorizationPrompt {
  userCode: string;
  /** Page where the person enters `userCode`. */
  verificationUri: string;
  /** The same page with the code filled in, when the server offers one. */
  verificationUriComplete?: string;
  /** Time left to approve, in seconds. */
  expiresInSeconds: number;
}

/** Options of `authorizeDevice`. */
export interface DeviceAuthorizationOptions {
  /** Issuer origin for discovery, e.g. `https://localhost:8443`. */
  issuer: string;
  clientId: string;
  credentials: DeviceCredentials;
  /** Receives the first refresh token; pass the same store to `DeviceClient`. */
  refreshTokenStore: RefreshTokenStore;
  /**
   * DPoP key pair the grant is bound to. Pass the same key pair to `DeviceClient`: the auth server
   * binds the refresh token to it, and rejects a refresh proved with any other key.
   */
  dpop?: DpopKeyPair;
  /** Space-separated scope to request; default: the device's registered scope. */
  scope?: string;
  /** Extra trusted CA certificate in PEM. */
  ca?: string;
  /** Called once with the user code, which the device shows or sends to its owner. */
  onPrompt: (prompt: DeviceAuthorizationPrompt) => void;
  /** Aborts the wait for approval; the promise then rejects with `aborted`. */
  signal?: AbortSignal;
}

// RFC 8628 section 3.5: without an `interval` the client waits 5 s between requests, and adds 5 s
// after each `slow_down`.
const defaultIntervalSeconds = 5;
const slowDownStepMs = 5000;

async function waitOrAbort(milliseconds: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await delay(milliseconds, undefined, { signal });
  } catch {
    throw new PortcullisClientError('aborted', 'The device authorization was aborted.', false);
  }
}

/**
 * Runs the device authorization grant: requests a user code, passes it to `onPrompt`, and polls the
 * token endpoint until the person approves. Resolves once the refresh token is saved in the store.
 * Rejects with the server's code (`access_denied`, `expired_token`, ...) or `aborted`.
 */
export async function authorizeDevice(options: DeviceAuthorizationOptions): Promise<void> {
  const tokens = new TokenSource({ ...options, dpop: options.dpop ? new DpopSigner(options.dpop) : undefined });
  try {
    const authorization = await tokens.initiateDeviceAuthorization(options.scope);
    options.onPrompt({
      userCode: authorization.user_code,
      verificationUri: authorization.verification_uri,
      verificationUriComplete: authorization.verification_uri_complete,
      expiresInSeconds: authorization.expires_in,
    });

    let intervalMs = (authorization.interval ?? defaultIntervalSeconds) * 1000;
    const deadlineMs = Date.now() + authorization.expires_in * 1000;
    while (Date.now() < deadlineMs) {
      await waitOrAbort(intervalMs, options.signal);
      try {
        await tokens.redeemDeviceCode(authorization.device_code);
        return;
      } catch (error) {
        const code = (error as PortcullisClientError).code;
        if (code === 'slow_down') {
          intervalMs += slowDownStepMs;
        } else if (code !== 'authorization_pending') {
          throw error;
        }
      }
    }
    throw new PortcullisClientError('expired_token', 'The user code expired before anyone approved the device.', false);
  } finally {
    await tokens.close();
  }
}
