// oidc-provider keeps the request context of `Provider.ctx` in this module; it is not part of its
// typed public API.
declare module 'oidc-provider/lib/helpers/als.js' {
  import type { AsyncLocalStorage } from 'node:async_hooks';

  const requestContext: AsyncLocalStorage<unknown>;
  export default requestContext;
}
