// Finds secrets in log lines. It looks for the exact values the tests handled, in every spelling a log
// line could give them. It also looks for the shape of a secret that no test recorded: a JWT, a PEM
// private key, a private JWK member, an Authorization credential or a session cookie.
import crypto from 'node:crypto';

/** One secret found in one log line. The report names the secret by a fingerprint, never by value. */
export interface Leak {
  source: string;
  /** What was found: `recorded secret <fingerprint>` or the name of a secret shape. */
  finding: string;
  /** The `event` of the log line, or its first characters when it has none. */
  line: string;
}

const secretShapes: ReadonlyArray<[string, RegExp]> = [
  ['JWT', /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\./],
  ['PEM private key', /-----BEGIN [A-Z ]*PRIVATE KEY-----/],
  ['private JWK member', /\\?"d\\?"\s*:\s*\\?"[A-Za-z0-9_-]{20,}/],
  ['Authorization credential', /\b(?:Bearer|Basic|DPoP)\s+[A-Za-z0-9._~+/=-]{16,}/i],
  ['session cookie', /(?:__Host-portcullis-[a-z-]+|\b_session|\b_interaction(?:_resume)?)(?:\.sig|\.legacy)*=[A-Za-z0-9_.-]{8,}/],
];

/** Every needle has at least this many characters: the index looks up prefixes of this length. */
export const prefixLength = 8;

// A log line may carry part of a secret, cut at a length limit. Windows of this length, taken every
// `fragmentStride` characters, find any fragment of 23 characters or more. Only token-like secrets
// are cut into windows: a window of a passphrase ("session refresh ") reads like a log message.
const fragmentLength = 16;
const fragmentStride = 8;
const tokenAlphabet = /^[A-Za-z0-9._~+/=-]+$/;

/** Lists the spellings a secret can take in a JSON log line: as is, JSON-escaped, URL- and form-encoded. */
export function spellings(secret: string): string[] {
  const forms = new Set([
    secret,
    JSON.stringify(secret).slice(1, -1),
    encodeURIComponent(secret),
    new URLSearchParams({ s: secret }).toString().slice(2),
  ]);
  return [...forms].filter((form) => form.length >= prefixLength);
}

function fingerprint(secret: string): string {
  return crypto.createHash('sha256').update(secret).digest('hex').slice(0, 12);
}

function describeLine(line: string): string {
  const event = /"event":"([^"]{1,80})"/.exec(line)?.[1];
  return event === undefined ? line.slice(0, 60) : `event ${event}`;
}

/** Indexes the recorded secrets by prefix, so one pass over a line checks all of them. */
export class LeakScanner {
  private readonly byPrefix = new Map<string, Array<{ needle: string; secret: string }>>();

  constructor(secrets: Iterable<string>) {
    for (const secret of secrets) {
      for (const spelling of spellings(secret)) {
        this.add(spelling, secret);
        const windowed = spelling.length >= fragmentLength * 1.5 && tokenAlphabet.test(spelling);
        for (let start = 0; windowed && start + fragmentLength <= spelling.length; start += fragmentStride) {
          this.add(spelling.slice(start, start + fragmentLength), secret);
        }
      }
    }
  }

  private add(needle: string, secret: string): void {
    const prefix = needle.slice(0, prefixLength);
    const bucket = this.byPrefix.get(prefix) ?? [];
    bucket.push({ needle, secret });
    this.byPrefix.set(prefix, bucket);
  }

  get size(): number {
    return this.byPrefix.size;
  }

  scan(source: string, line: string): Leak[] {
    const leaks: Leak[] = [];
    for (const [name, shape] of secretShapes) {
      if (shape.test(line)) {
        leaks.push({ source, finding: name, line: describeLine(line) });
      }
    }

    for (let index = 0; index + prefixLength <= line.length; index += 1) {
      const bucket = this.byPrefix.get(line.slice(index, index + prefixLength));
      const hit = bucket?.find((candidate) => line.startsWith(candidate.needle, index));
      if (hit !== undefined) {
        leaks.push({ source, finding: `recorded secret ${fingerprint(hit.secret)}`, line: describeLine(line) });
        break;
      }
    }
    return leaks;
  }
}
