import type { JWK } from 'jose';
import type { Logger } from 'pino';

import type { Store } from '../store/database.ts';
import { loadSigningKeys, signingKeysFingerprint } from '../store/signing-keys.ts';

/**
 * The auth server's signing keys as currently stored. A rotation by `portcullis keys rotate` in
 * another process is picked up by `reload()`, which the server calls on a request through the admin
 * socket and on a timer.
 */
export class SigningKeyRing {
  private keys: JWK[] = [];
  private fingerprint = '';
  private readonly listeners: Array<(keys: JWK[]) => void> = [];

  /**
   * @param retentionSeconds how long a retired key stays published: the longest lifetime of a token
   *   it signed, plus clock leeway.
   */
  constructor(private readonly store: Store, private readonly retentionSeconds: number, private readonly logger: Logger) {}

  /** Returns the current private JWKs, active key first; a new array after every change. */
  current(): JWK[] {
    return this.keys;
  }

  /** Registers a function called with the new keys after each change. */
  onChange(listener: (keys: JWK[]) => void): void {
    this.listeners.push(listener);
  }

  /** Reads the keys from the database; returns true and notifies listeners when they changed. */
  async reload(): Promise<boolean> {
    const keys = await loadSigningKeys(this.store, this.retentionSeconds);
    const fingerprint = await signingKeysFingerprint(this.store);
    if (fingerprint === this.fingerprint) {
      return false;
    }

    const first = this.fingerprint === '';
    this.keys = keys;
    this.fingerprint = fingerprint;
    if (!first) {
      this.logger.info({ event: 'key.rotated', active_kid: keys[0]?.kid, published: keys.map((key) => key.kid) }, 'signing keys changed');
      this.listeners.forEach((listener) => listener(keys));
    }
    return true;
  }
}
