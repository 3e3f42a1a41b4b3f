// Presentation of a device's access token to the gateway: in the handshake's `Authorization` header,
// and in the in-band `auth` frame. A DPoP-bound token goes with a fresh proof each time.
import type { DpopSigner, NonceCache } from './dpop.ts';
import { PortcullisClientError } from './policy.ts';
import type { AccessToken } from './token-source.ts';

/** The settings a device needs to present a token at the gateway's WebSocket URL. */
export interface Presenter {
  /** The gateway endpoint, e.g. `wss://localhost:8443/ws`; its `https://` form is the proof's `htu`. */
  url: string;
  clientId: string;
  dpop: DpopSigner | null;
  /** Nonces the gateway sent, for the next proof. */
  nonces: NonceCache;
}

function signer(presenter: Presenter): DpopSigner {
  if (!presenter.dpop) {
    throw new PortcullisClientError('unexpected_token_type', 'A DPoP-bound token cannot be sent without the DPoP key.', false);
  }
  return presenter.dpop;
}

// RFC 9449 section 7.1: a bound token travels with the `DPoP` scheme and a proof whose `ath` is the
// hash of that token. The handshake is an HTTP GET to the https form of the WebSocket URL.
function proofFor(presenter: Presenter, token: AccessToken): Promise<string> {
  return signer(presenter).proof({ htm: 'GET', url: presenter.url, accessToken: token.value, nonce: presenter.nonces.get(presenter.url) });
}

/** Builds the handshake headers: `Authorization` (`Bearer` or `DPoP`), a `DPoP` proof for a bound token, and `X-Client-Id`. */
export async function handshakeHeaders(presenter: Presenter, token: AccessToken): Promise<Record<string, string>> {
  if (token.type === 'Bearer') {
    return { Authorization: `Bearer ${token.value}`, 'X-Client-Id': presenter.clientId };
  }
  return { Authorization: `DPoP ${token.value}`, DPoP: await proofFor(presenter, token), 'X-Client-Id': presenter.clientId };
}

/**
 * Builds the in-band `auth` frame. For a bound token it carries a proof made exactly as for the
 * handshake, with `ath` of the new token, so the gateway can check that the same key signed it.
 */
export async function authFrame(presenter: Presenter, token: AccessToken): Promise<string> {
  if (token.type === 'Bearer') {
    return JSON.stringify({ type: 'auth', token: token.value });
  }
  return JSON.stringify({ type: 'auth', token: token.value, dpop: await proofFor(presenter, token) });
}
