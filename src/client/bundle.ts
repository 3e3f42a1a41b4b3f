import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

/** Path of the browser SDK's entry module. */
export const browserClientEntry = path.join(path.dirname(fileURLToPath(import.meta.url)), 'browser.ts');

/**
 * Bundles the browser SDK into one ES module, the text to serve as `/static/portcullis-client.js`.
 * It runs esbuild in memory, in about 50 ms, so a server can call it once at start.
 */
export async function bundleBrowserClient(): Promise<string> {
  const result = await build({
    entryPoints: [browserClientEntry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    legalComments: 'none',
    logLevel: 'silent',
  });
  return result.outputFiles[0].text;
}
