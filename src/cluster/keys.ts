import type { ConnectionOwner } from '../gateway/registry.ts';

/** The Redis pub/sub channels and key names of one deployment, all under `redisKeyPrefix`. */
export interface ClusterKeys {
  /** Pub/sub channel of channel messages, e.g. `portcullis:messages`. */
  messages: string;
  /** Pub/sub channel of revocations, e.g. `portcullis:revocations`. */
  revocations: string;
  /** Key prefix of one handshake rate limiter; `rate-limiter-flexible` appends `:<address or client id>`. */
  rateLimit(name: string): string;
  /** Sorted set of the live connection slots of one owner, e.g. `portcullis:connections:device:sensor-1`. */
  connections(owner: ConnectionOwner): string;
}

/** Builds the channel and key names from the deployment's prefix, such as the default `portcullis:`. */
export function clusterKeys(prefix: string): ClusterKeys {
  return {
    messages: `${prefix}messages`,
    revocations: `${prefix}revocations`,
    rateLimit: (name) => `${prefix}${name}`,
    connections: (owner) => (owner.kind === 'device' ? `${prefix}connections:device:${owner.clientId}` : `${prefix}connections:browser:${owner.sub}`),
  };
}
