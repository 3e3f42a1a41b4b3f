import { PortcullisError } from '../../errors.ts';
import type { HandshakeCheck } from '../handshake.ts';
import type { VerifiedToken } from '../token-verifier.ts';

/**
 * Verifies the presented access token and ties it to its path: a browser cookie must hold a token
 * issued to the gateway's own client, and a device must not present one. Browser sessions exist only
 * with the built-in auth server, so a gateway that trusts an external issuer refuses every cookie.
 */
export function accessTokenCheck(verify: (token: string) => Promise<VerifiedToken>, gatewayClientId: string, builtInIssuer = true): HandshakeCheck {
  return {
    name: 'access_token',
    async run(state) {
      if (!state.token) {
        return 'token_missing';
      }
      if (state.kind === 'browser' && !builtInIssuer) {
        return 'token_invalid';
      }

      try {
        state.verified = await verify(state.token);
      } catch (error) {
        return error instanceof PortcullisError ? error.code : 'token_invalid';
      }

      const isGatewayToken = state.verified.clientId === gatewayClientId;
      if (state.kind === 'browser' && (!isGatewayToken || !state.verified.grantId)) {
        return 'token_invalid';
      }
      // A browser session token taken to another client must not skip the Origin and CSRF checks.
      if (state.kind === 'device' && isGatewayToken) {
        return 'token_invalid';
      }
      return undefined;
    },
  };
}
