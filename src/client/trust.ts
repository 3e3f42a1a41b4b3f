import tls from 'node:tls';

// One context per distinct CA text. Passing `ca` to each connection instead would parse Node's ~140
// root certificates again for every TLS handshake, which stalls a process that runs many clients.
const contexts = new Map<string, tls.SecureContext>();

/**
 * Returns a TLS context that trusts Node's root certificates plus `ca` (PEM, one or more
 * certificates). Clients with the same `ca` share one context. Returns undefined without `ca`.
 */
export function trustContext(ca: string | undefined): tls.SecureContext | undefined {
  if (ca === undefined) {
    return undefined;
  }

  let context = contexts.get(ca);
  if (!context) {
    context = tls.createSecureContext({ ca: [...tls.rootCertificates, ca] });
    contexts.set(ca, context);
  }
  return context;
}
