import { X509Certificate, createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { chromium, type BrowserContext } from 'playwright-core';

/** Debian's Chromium; the tests use it instead of a browser build downloaded by Playwright. */
export const chromiumPath = '/usr/bin/chromium';

/**
 * Switches every test browser gets: headless, no GPU, no QUIC, and background traffic (updates, sync,
 * first-run pages) turned off.
 */
export const chromiumSwitches = Object.freeze([
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]);

/** A headless Chromium with its own fresh profile. */
export interface TestBrowser {
  context: BrowserContext;
  /** Closes the browser and deletes its profile directory. */
  close(): Promise<void>;
}

/** Returns the base64 SHA-256 of a certificate's SubjectPublicKeyInfo, the form Chromium's SPKI allow-list takes. */
export function spkiSha256(certificatePem: string): string {
  const spki = new X509Certificate(certificatePem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

/**
 * Launches Chromium in a new profile that trusts exactly the keys of the given certificate files.
 * Certificate checks stay on: a certificate with any other key still fails.
 */
export async function launchChromium(trustedCertificateFiles: string[]): Promise<TestBrowser> {
  const hashes = trustedCertificateFiles.map((file) => spkiSha256(fs.readFileSync(file, 'utf8')));
  const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-chromium-'));

  // Chromium honours the SPKI allow-list only with an explicit --user-data-dir, which a persistent context passes.
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: chromiumPath,
    args: [...chromiumSwitches, `--ignore-certificate-errors-spki-list=${hashes.join(',')}`],
    ignoreHTTPSErrors: false,
  });

  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profileDir, { recursive: true, force: true });
    },
  };
}
