import type Provider from 'oidc-provider';
import type { Configuration } from 'openid-client';
import type { Logger } from 'pino';

import type { ChannelBroker } from '../channels/broker.ts';
import type { ClusterStatus } from '../cluster/cluster.ts';
import type { LoginThrottle } from '../auth/login-throttle.ts';
import type { Options } from '../config/options.ts';
import type { Store } from '../store/database.ts';
import type { ConnectionRegistry } from '../gateway/registry.ts';
import type { RevocationScope } from '../gateway/guard/revocation.ts';
import type { RevocationService } from '../gateway/revocations.ts';
import type { VerifiedToken } from '../gateway/token-verifier.ts';
import type { DpopVerifier } from '../gateway/dpop/verifier.ts';

/** Everything the HTTPS routes share. */
export interface WebContext {
  options: Readonly<Options>;
  store: Store;
  logger: Logger;
  /** The current auth server, replaced after a signing-key rotation, so read it per request; null with `--role gateway`. */
  auth: { provider: Provider } | null;
  /** Sources of the revocation check: the device registry only for the built-in auth server's tokens. */
  revocationScope: RevocationScope;
  /** Verifies an access token exactly as the handshake does. */
  verifyToken: (token: string) => Promise<VerifiedToken>;
  /** Verifies the DPoP proofs of DPoP-bound tokens at the HTTP API. */
  dpop: DpopVerifier;
  /** Verifies a session token like `verifyToken` but accepts it up to five minutes past `exp`, for logout and refresh. */
  verifyExpiredSessionToken: (token: string) => Promise<VerifiedToken>;
  bffClient: () => Promise<Configuration>;
  throttle: LoginThrottle;
  csrfKey: string;
  /** HMAC key for short-lived signed cookies. */
  stateKey: string;
  gatewayAudience: string;
  registry: ConnectionRegistry;
  revocations: RevocationService;
  /** Routes published messages to subscribed connections on this node. */
  broker: ChannelBroker;
  /** State of the Redis link for `/readyz`; null without `--redis-url`. */
  clusterStatus: (() => ClusterStatus) | null;
  /** Further dependencies `/readyz` checks, by name; each resolves to whether it is reachable. */
  readinessProbes: Record<string, () => Promise<boolean>>;
}
