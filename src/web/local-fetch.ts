import tls from 'node:tls';

import { Agent, fetch as undiciFetch } from 'undici';

/** Listen address and trusted CA of this server, for requests it makes to itself. */
export interface LocalTarget {
  host: string;
  port: () => number;
  /** Extra trusted CA in PEM (the development CA); null trusts the system store only. */
  ca: string | null;
  /**
   * Server name to verify instead of the public host. The generated development certificate names
   * only localhost and loopback addresses, whatever `--public-url` is.
   */
  servername?: string;
}

function connectHost(host: string): string {
  if (host === '0.0.0.0' || host === '') {
    return '127.0.0.1';
  }
  return host === '::' ? '::1' : host;
}

/**
 * Creates a `fetch` that sends requests for the public origin to this process's own listener. The
 * TLS server name and `Host` stay those of the public URL, so certificates and issuer checks hold,
 * while no DNS lookup or outside proxy is involved.
 */
export function createLocalFetch(target: LocalTarget): typeof fetch {
  // One context for all requests: parsing the system roots on every connection is slow.
  const secureContext = target.ca ? tls.createSecureContext({ ca: [...tls.rootCertificates, target.ca] }) : undefined;
  const dispatcher = new Agent({
    connect(options, callback) {
      const socket = tls.connect({
        host: connectHost(target.host),
        port: target.port(),
        servername: target.servername ?? options.servername ?? options.hostname,
        secureContext,
        ALPNProtocols: ['http/1.1'],
      });
      socket.once('secureConnect', () => callback(null, socket));
      socket.once('error', (error) => callback(error, null));
    },
  });

  return ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher })) as unknown as typeof fetch;
}
