import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import type { Logger } from 'pino';

import { OptionsError, type Options } from '../config/options.ts';

/** Name of the generated webhook secret file inside the data directory. */
export const webhookSecretFileName = 'webhook-secret';

/** Shortest accepted webhook secret, in characters. The generated secret has 64 hex characters. */
export const minWebhookSecretLength = 32;

/** Default replay window of `verifyWebhookSignature`, in seconds. */
export const defaultWebhookToleranceSeconds = 300;

/** Request headers of every webhook delivery, lower-cased as Node exposes them. */
export const webhookHeaders = Object.freeze({
  /** UUID of the message; the same on every retry, so receivers can drop duplicates. */
  delivery: 'x-portcullis-delivery',
  /** Epoch seconds at which this attempt was signed. */
  timestamp: 'x-portcullis-timestamp',
  /** `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. */
  signature: 'x-portcullis-signature',
});

/** Computes the `X-Portcullis-Signature` value for one attempt: `v1=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"`. */
export function signWebhookBody(secret: string, timestampSeconds: number, body: string | Buffer): string {
  const hmac = crypto.createHmac('sha256', secret);
  hmac.update(`${timestampSeconds}.`);
  hmac.update(body);
  return `v1=${hmac.digest('hex')}`;
}

/** Inputs of `verifyWebhookSignature`: the secret, the two headers as received, and the raw body. */
export interface WebhookSignatureInput {
  secret: string;
  /** Value of `X-Portcullis-Timestamp`. */
  timestamp: string | undefined;
  /** The request body exactly as received, before any JSON parsing. */
  body: string | Buffer;
  /** Value of `X-Portcullis-Signature`; a comma-separated list is accepted. */
  signature: string | undefined;
  /** Largest accepted distance between the timestamp and now, in seconds. Default 300. */
  toleranceSeconds?: number;
  /** Current time in epoch seconds. Default: the system clock. */
  nowSeconds?: number;
}

/**
 * Checks a received webhook for receivers written in Node: true only when the timestamp lies
 * within the replay window and one `v1=` signature matches. The comparison runs in constant time.
 */
export function verifyWebhookSignature(input: WebhookSignatureInput): boolean {
  if (!input.timestamp || !/^\d{1,12}$/.test(input.timestamp) || !input.signature) {
    return false;
  }

  const timestampSeconds = Number(input.timestamp);
  const nowSeconds = input.nowSeconds ?? Math.floor(Date.now() / 1000);
  // A captured request replayed later carries an old timestamp, and changing it breaks the signature.
  if (Math.abs(nowSeconds - timestampSeconds) > (input.toleranceSeconds ?? defaultWebhookToleranceSeconds)) {
    return false;
  }

  const expected = Buffer.from(signWebhookBody(input.secret, timestampSeconds, input.body).slice('v1='.length), 'hex');
  return input.signature.split(',').some((entry) => {
    const [version, value] = entry.trim().split('=', 2);
    if (version !== 'v1' || !value || !/^[0-9a-f]{64}$/.test(value)) {
      return false;
    }
    return crypto.timingSafeEqual(Buffer.from(value, 'hex'), expected);
  });
}

/**
 * Returns the webhook secret: the trimmed content of `webhookSecretFile` when set, otherwise the
 * content of `<dataDir>/webhook-secret`, which is created with 32 random bytes (hex) and mode 0600
 * on first use. Throws `OptionsError` for an unreadable or too short secret.
 */
export function loadWebhookSecret(options: Pick<Options, 'dataDir' | 'webhookSecretFile'>, logger: Logger): string {
  if (options.webhookSecretFile) {
    return readSecretFile(options.webhookSecretFile, 'webhookSecretFile (--webhook-secret-file)');
  }

  const file = path.join(options.dataDir, webhookSecretFileName);
  try {
    // `wx` fails when the file exists, so two servers starting at once cannot overwrite each other's secret.
    fs.writeFileSync(file, `${crypto.randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    logger.info({ event: 'webhook.secret_created', path: file }, 'generated the webhook secret; give the receiver a copy of this file');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new OptionsError(`The webhook secret file ${file} could not be created (${(error as NodeJS.ErrnoException).code}); check that --data-dir is writable or pass --webhook-secret-file.`);
    }
  }
  return readSecretFile(file, `The generated webhook secret ${file}`);
}

function readSecretFile(file: string, name: string): string {
  let secret: string;
  try {
    secret = fs.readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new OptionsError(`${name}: ${file} could not be read (${(error as NodeJS.ErrnoException).code}); check the path and its permissions.`);
  }

  if (secret.length < minWebhookSecretLength) {
    throw new OptionsError(`${name}: ${file} must hold at least ${minWebhookSecretLength} characters; create one with "openssl rand -hex 32".`);
  }
  return secret;
}
