// Captures, for the whole test run, every log line a Portcullis process writes and every secret the
// tests handle. `npm test` sets PORTCULLIS_TEST_CAPTURE_DIR and, once every test has finished, fails
// the run if any captured secret appears in any captured log line (scripts/check-log-hygiene.ts).
// Without that variable, as when one file runs alone, nothing is captured.
import fs from 'node:fs';
import path from 'node:path';

import type { Store } from '../../src/store/database.ts';

const captureDir = process.env.PORTCULLIS_TEST_CAPTURE_DIR;

/** Shorter values are too likely to occur by chance in a log line to be worth a search. */
const shortestSearchedSecret = 8;

/** JSON body fields of Portcullis and oidc-provider responses that carry a secret. */
const secretResponseFields = ['access_token', 'refresh_token', 'id_token', 'client_secret', 'device_code', 'csrf_token'];

/**
 * Cookies whose value is not a secret: oidc-provider puts the interaction id in these and in the
 * `/interaction/<id>` path, and signs them, so the `.sig` companion is what an attacker would lack.
 */
const publicCookieNames = new Set(['_interaction', '_interaction_resume']);

/** Form fields a test sends that carry a secret. */
const secretFormFields = ['password', 'refresh_token', 'client_secret', 'token', 'device_code', 'csrf_token', 'client_assertion'];

function append(kind: 'logs' | 'secrets', lines: string[]): void {
  if (captureDir === undefined || lines.length === 0) {
    return;
  }
  // One file per process: appends from several test processes never interleave inside a line.
  fs.appendFileSync(path.join(captureDir, `${kind}-${process.pid}.jsonl`), lines.map((line) => `${line}\n`).join(''));
}

/** True while the run captures; tests of the capture itself check this. */
export function capturing(): boolean {
  return captureDir !== undefined;
}

/**
 * Records a token, cookie value, client secret, password or private key that a test obtained, so the
 * final check can prove no log line carries it.
 */
export function rememberSecret(value: string | null | undefined): void {
  if (typeof value !== 'string' || value.length < shortestSearchedSecret) {
    return;
  }
  append('secrets', [JSON.stringify(value)]);
}

/** Records log lines written by a Portcullis process; `source` names the process in a failure report. */
export function captureLogLines(source: string, lines: string[]): void {
  append('logs', lines.map((line) => JSON.stringify({ source, line })));
}

/** Records the secrets a server keeps: its generated secrets, its signing keys and its TLS keys. */
export async function rememberServerSecrets(store: Store, dataDir: string): Promise<void> {
  if (!capturing()) {
    return;
  }

  const secrets = await store.selectFrom('secrets').select('value').execute();
  secrets.forEach((row) => rememberSecret(row.value));

  const keys = await store.selectFrom('signing_keys').select('private_jwk').execute();
  keys.forEach((row) => rememberSecret((JSON.parse(row.private_jwk) as { d?: string }).d));

  const tlsDir = path.join(dataDir, 'tls');
  const keyFiles = fs.existsSync(tlsDir) ? fs.readdirSync(tlsDir).filter((name) => name.endsWith('-key.pem')) : [];
  for (const name of keyFiles) {
    rememberPemBody(fs.readFileSync(path.join(tlsDir, name), 'utf8'));
  }
}

// A PEM reaches a JSON log line with its line breaks escaped, so each base64 line is searched alone.
function rememberPemBody(pem: string): void {
  pem.split('\n').filter((line) => !line.startsWith('-----')).forEach((line) => rememberSecret(line.trim()));
}

function rememberCookie(pair: string): void {
  const separator = pair.indexOf('=');
  if (separator < 0 || publicCookieNames.has(pair.slice(0, separator).trim())) {
    return;
  }
  rememberSecret(pair.slice(separator + 1).trim());
}

function rememberRequestSecrets(init: RequestInit | undefined): void {
  const headers = new Headers(init?.headers);
  rememberSecret(headers.get('authorization')?.replace(/^\S+\s+/, ''));
  for (const pair of (headers.get('cookie') ?? '').split(';')) {
    rememberCookie(pair);
  }

  if (typeof init?.body !== 'string' && !(init?.body instanceof URLSearchParams)) {
    return;
  }
  const form = new URLSearchParams(init.body);
  secretFormFields.forEach((field) => rememberSecret(form.get(field)));
}

async function rememberResponseSecrets(response: Response): Promise<void> {
  for (const header of response.headers.getSetCookie()) {
    rememberCookie(header.split(';')[0]);
  }

  if (!(response.headers.get('content-type') ?? '').includes('json')) {
    return;
  }
  const body = await response.clone().json().catch(() => null) as Record<string, unknown> | null;
  if (body === null || typeof body !== 'object') {
    return;
  }
  for (const field of secretResponseFields) {
    rememberSecret(typeof body[field] === 'string' ? body[field] as string : null);
  }
}

/**
 * Wraps a `fetch` so that the secrets it sends (Authorization, cookies, password and token form
 * fields) and receives (tokens in JSON responses, Set-Cookie values) are remembered.
 */
export function secretRecordingFetch(inner: typeof fetch): typeof fetch {
  if (!capturing()) {
    return inner;
  }
  return (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    rememberRequestSecrets(init);
    const response = await inner(input, init);
    await rememberResponseSecrets(response);
    return response;
  }) as typeof fetch;
}
