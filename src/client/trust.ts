import tls from 'node:tls';

/** A client certificate and its private key, both PEM, for mutual TLS (RFC 8705). */
export interface ClientCertificate {
  cert: string;
  key: string;
}

// One context per distinct CA text and certificate. Passing `ca` to each connection instead would
// parse Node's ~140 root certificates again for every TLS handshake, which stalls a process that
// runs many clients.
const contexts = new Map<string, tls.SecureContext>();

/**
 * Returns a TLS context that trusts Node's root certificates plus `ca` (PEM, one or more
 * certificates) and presents `certificate` when the server requests one. Clients with the same
 * `ca` and certificate share one context. Returns undefined with neither.
 */
export function trustContext(ca: string | undefined, certificate?: ClientCertificate): tls.SecureContext | undefined {
  if (ca === undefined && certificate === undefined) {
    return undefined;
  }

  const cacheKey = JSON.stringify([ca ?? null, certificate?.cert ?? null, certificate?.key ?? null]);
  let context = contexts.get(cacheKey);
  if (!context) {
    context = tls.createSecureContext({ ca: ca === undefined ? undefined : [...tls.rootCertificates, ca], cert: certificate?.cert, key: certificate?.key });
    contexts.set(cacheKey, context);
  }
  return context;
}
