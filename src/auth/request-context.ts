import type { ServerResponse } from 'node:http';

import providerRequestContext from 'oidc-provider/lib/helpers/als.js';

/**
 * Returns a function to call with the response of every request handed to oidc-provider, which then
 * switches the provider's request-context storage off whenever no such request is in flight.
 *
 * oidc-provider runs each request inside an `AsyncLocalStorage` so that hooks can read
 * `Provider.ctx`. On Node 20 and 22 such a storage installs async hooks for the whole process from its
 * first use, and every promise, socket and timer of the gateway pays for them, about 10% of a
 * WebSocket handshake's CPU time as measured here. Portcullis reads no `Provider.ctx`, and the
 * provider's next request switches the storage on again, so requests in flight keep their context.
 */
export function createRequestContextTracker(): (response: ServerResponse) => void {
  let inFlight = 0;

  return function trackProviderRequest(response) {
    inFlight += 1;
    response.once('close', () => {
      inFlight -= 1;
      if (inFlight === 0) {
        providerRequestContext.disable();
      }
    });
  };
}
