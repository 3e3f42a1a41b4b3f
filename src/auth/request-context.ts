import type { ServerResponse } from 'node:http';

import providerRequestContext from 'oidc-provider/lib/helpers/als.js';

/**
 * Returns a function to call with the response of every request handed to oidc-provider, which then
 * switches the provider's request-context storage off whenever no such request is in flight.
 *
 * oidc-provider runs each request inside an `AsyncLocalStorage` so that hooks can read
 * `Provider.ctx`. On Node 20 and 22 such a storage installs async hooks for the whole process from
 * its first use. Every promise, socket and timer of the gateway then pays for them, about 10% of a
 * WebSocket handshake's CPU time as measured here. Portcullis reads no `Provider.ctx`, and the
 * provider's next request switches the storage on again, so requests in flight keep their context.
 * NOTE: the storage lives in an internal oidc-provider file, so package.json pins the minor version.
 * Before an upgrade, check that the new version reads `Provider.ctx` only in hooks Portcullis leaves unset.
 */
export function createRequestContextTracker(): (response: ServerResponse) => void {
  return function trackProviderRequest(response) {
    providerRequestsInFlight += 1;
    response.once('close', () => {
      providerRequestsInFlight -= 1;
      if (providerRequestsInFlight === 0) {
        providerRequestContext.disable();
      }
    });
  };
}

// The storage belongs to the oidc-provider module, so every server in the process shares one count.
let providerRequestsInFlight = 0;
