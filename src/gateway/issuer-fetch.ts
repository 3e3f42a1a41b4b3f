import crypto from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';

import { Agent, fetch as undiciFetch } from 'undici';

import { OptionsError } from '../config/options.ts';

/** A `fetch` for the issuer's metadata and JWKS, in the shape jose's `customFetch` expects. */
export type IssuerFetch = (url: string, init: { headers?: Headers; method?: 'GET'; redirect?: 'manual'; signal?: AbortSignal }) => Promise<Response>;

/** Time limit of one request to the issuer, in milliseconds. */
export const issuerFetchTimeoutMs = 5_000;

// Real key sets and metadata documents are a few KiB; a larger response means a broken or hostile issuer.
const maxIssuerResponseBytes = 512 * 1024;

/** Reads `--issuer-ca` at start, so a missing or non-PEM file stops the start with a clear message. */
export function readIssuerCa(caFile: string): string {
  let pem: string;
  try {
    pem = fs.readFileSync(caFile, 'utf8');
  } catch (error) {
    throw new OptionsError(`issuerCaFile (--issuer-ca) ${caFile} could not be read (${(error as NodeJS.ErrnoException).code}); check the path.`);
  }
  try {
    new crypto.X509Certificate(pem);
  } catch {
    throw new OptionsError(`issuerCaFile (--issuer-ca) ${caFile} does not contain a PEM certificate; pass the CA certificate of your identity provider.`);
  }
  return pem;
}

async function readBounded(response: Response): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body ?? []) {
    total += chunk.length;
    if (total > maxIssuerResponseBytes) {
      throw new Error(`the issuer's response is larger than ${maxIssuerResponseBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Creates the fetch used for the issuer: the system CAs plus `caPem`, no redirects (so the issuer's
 * responses cannot send the gateway to another host), and responses of at most 512 KiB.
 */
export function createIssuerFetch(caPem: string | null): IssuerFetch {
  const dispatcher = new Agent({ connect: { ca: caPem ? [...tls.rootCertificates, caPem] : undefined } });

  return async (url, init) => {
    const response = await undiciFetch(url, { ...init, redirect: 'manual', dispatcher } as Parameters<typeof undiciFetch>[1]);
    const body = await readBounded(response as unknown as Response);
    return new Response(body as unknown as BodyInit, { status: response.status, headers: response.headers as unknown as Headers });
  };
}

/**
 * Finds the issuer's `jwks_uri` in its OpenID Connect metadata, or else its OAuth metadata (RFC
 * 8414). The document's `issuer` must equal the configured one exactly.
 */
export async function discoverJwksUrl(issuer: string, fetchFromIssuer: IssuerFetch): Promise<string> {
  const base = issuer.replace(/\/+$/, '');
  let lastError: unknown = null;

  for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    try {
      const response = await fetchFromIssuer(`${base}${path}`, { signal: AbortSignal.timeout(issuerFetchTimeoutMs) });
      if (response.status !== 200) {
        throw new Error(`${path} responded with status ${response.status}`);
      }

      const metadata = await response.json() as { issuer?: unknown; jwks_uri?: unknown };
      if (metadata.issuer !== issuer) {
        throw new Error(`the metadata names issuer ${JSON.stringify(metadata.issuer)}, not the configured ${JSON.stringify(issuer)}`);
      }
      if (typeof metadata.jwks_uri !== 'string' || !metadata.jwks_uri.startsWith('https://')) {
        throw new Error('the metadata has no https:// jwks_uri');
      }
      return metadata.jwks_uri;
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}
