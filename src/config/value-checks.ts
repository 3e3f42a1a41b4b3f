// Checks of single option values. Each throws an OptionsError that names the option and the fix.
import net from 'node:net';

import { CertificateFileError, readCaBundle } from '../tls/client-ca.ts';

/** An invalid option: the message names the option path and how to fix it. Exit code 2. */
export class OptionsError extends Error {
  readonly code = 'invalid_option';
  readonly exitCode = 2;

  constructor(message: string) {
    super(message);
    this.name = 'OptionsError';
  }
}

/** Returns `value` as a whole number from `min` to `max`, converting a numeric string with `Number`. */
export function requireInteger(name: string, value: unknown, min: number, max: number): number {
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < min || number > max) {
    throw new OptionsError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}.`);
  }
  return number;
}

/** Returns `value` as a boolean, accepting the strings `true` and `false` too. */
export function requireBoolean(name: string, value: unknown): boolean {
  if (value === true || value === 'true') {
    return true;
  }
  if (value === false || value === 'false') {
    return false;
  }
  throw new OptionsError(`${name} must be true or false, got ${JSON.stringify(value)}.`);
}

function parseHttpsUrlText(name: string, text: string): URL {
  try {
    return new URL(text);
  } catch {
    throw new OptionsError(`${name} must be an absolute https:// URL, got ${JSON.stringify(text)}.`);
  }
}

/** Accepts https:// URLs, and http:// only on a loopback host, where no one else can read the traffic. */
export function requireWebhookUrl(name: string, value: unknown): string {
  const text = requireString(name, value);
  const url = parseHttpsUrlText(name, text);

  // A host name such as 127.example.com is not loopback, so only the IPv4 literal range counts.
  const loopback = url.hostname === 'localhost' || url.hostname === '[::1]' || (net.isIPv4(url.hostname) && url.hostname.startsWith('127.'));
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new OptionsError(`${name} must use https:// (http:// is accepted only for a loopback host).`);
  }
  if (url.username || url.password) {
    throw new OptionsError(`${name} must not contain credentials; the body is signed with the webhook secret instead.`);
  }
  return url.href;
}

/** Accepts a URL with one of `protocols`; the message never repeats the value, which may hold a password. */
export function requireServiceUrl(name: string, value: unknown, protocols: string[]): string {
  const text = requireString(name, value);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new OptionsError(`${name} must be an absolute URL starting with ${protocols.join(' or ')}.`);
  }
  if (!protocols.includes(url.protocol.replace(/:$/, '://'))) {
    throw new OptionsError(`${name} must start with ${protocols.join(' or ')}.`);
  }
  return text;
}

/**
 * Accepts 1 to 64 letters, digits and `: . _ - { }`. Glob characters are excluded, so that
 * `SCAN MATCH <prefix>*` finds only the deployment's own keys.
 */
export function requireKeyPrefix(name: string, value: unknown): string {
  const text = requireString(name, value);
  if (!/^[A-Za-z0-9:._{}-]{1,64}$/.test(text)) {
    throw new OptionsError(`${name} must be 1 to 64 letters, digits or the characters : . _ - { }, got ${JSON.stringify(text)}.`);
  }
  return text;
}

/** Returns `value` when it is a non-empty string. */
export function requireString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new OptionsError(`${name} must be a non-empty string, got ${JSON.stringify(value)}.`);
  }
  return value;
}

/** Returns `value` as a list of non-empty strings, turning a single string into a list of one. */
export function requireStringList(name: string, value: unknown): string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.some((item) => typeof item !== 'string' || item === '')) {
    throw new OptionsError(`${name} must be a list of non-empty strings, got ${JSON.stringify(value)}.`);
  }
  return list;
}

/** Parses an origin the way browsers serialise it (lower-case scheme and host, default port omitted). */
export function normalizeOrigin(name: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new OptionsError(`${name} must be an absolute https:// origin such as https://app.example.com, got ${JSON.stringify(value)}.`);
  }

  if (url.protocol !== 'https:') {
    throw new OptionsError(`${name} must use https://, got ${JSON.stringify(value)}.`);
  }
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    throw new OptionsError(`${name} must be an origin without path, query or credentials, got ${JSON.stringify(value)}; use ${url.origin}.`);
  }
  return url.origin;
}

/** Accepts an https:// URL without credentials or fragment, kept exactly as given (issuers compare as strings). */
export function requireHttpsUrl(name: string, value: unknown): string {
  const text = requireString(name, value);
  const url = parseHttpsUrlText(name, text);
  // An empty `?` or `#` leaves `search` and `hash` empty, so the text itself is checked.
  if (url.protocol !== 'https:' || url.username || url.password || /[#?\s]/.test(text)) {
    throw new OptionsError(`${name} must be an https:// URL without credentials, query, fragment or spaces, got ${JSON.stringify(text)}.`);
  }
  return text;
}

/** Checks that `value` names a readable PEM bundle of CA certificates and returns it. */
export function requireCaBundleFile(name: string, value: unknown): string {
  const file = requireString(name, value);
  try {
    readCaBundle(file);
  } catch (error) {
    if (error instanceof CertificateFileError) {
      throw new OptionsError(`${name}: ${error.message}`);
    }
    throw error;
  }
  return file;
}

/** Returns `value` in lower case when it is an HTTP header name (an RFC 9110 token). */
export function requireHeaderName(name: string, value: unknown): string {
  const text = requireString(name, value);
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/.test(text)) {
    throw new OptionsError(`${name} must be an HTTP header name such as Client-Cert, got ${JSON.stringify(text)}.`);
  }
  return text.toLowerCase();
}
