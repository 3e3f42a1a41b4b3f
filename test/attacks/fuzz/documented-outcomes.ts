// The reactions the docs promise, read from docs/errors.md and docs/protocol.md the way
// test/docs/errors-catalogue.test.ts reads them, so that a fuzz outcome counts as documented only
// when the docs list it.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { errorCatalogue, type ErrorCode } from '../../../src/errors.ts';

const docsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../docs');

/** Returns the lines after `heading` up to the next heading of the same or a higher level. */
function sectionLines(markdown: string, heading: string): string[] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.trim() === heading);
  if (start === -1) {
    throw new Error(`the docs have no "${heading}" section`);
  }

  const level = heading.indexOf(' ');
  const rest = lines.slice(start + 1);
  const end = rest.findIndex((line) => /^#+ /.test(line) && line.indexOf(' ') <= level);
  return end === -1 ? rest : rest.slice(0, end);
}

function readDoc(name: string): string {
  return fs.readFileSync(path.join(docsDir, name), 'utf8');
}

/** Reads the rows "| `code` | status | ..." of the "Error codes" table of docs/errors.md as code → status. */
function readErrorStatuses(): Map<string, number> {
  const statuses = new Map<string, number>();
  for (const line of sectionLines(readDoc('errors.md'), '## Error codes')) {
    const match = /^\|\s*`([a-z0-9_]+)`\s*\|\s*(\d{3})\s*\|/.exec(line);
    if (match) {
      statuses.set(match[1], Number(match[2]));
    }
  }
  return statuses;
}

/** Reads the first column of the "WebSocket close codes" table of docs/errors.md. */
function readCloseCodes(): Set<number> {
  const codes = new Set<number>();
  for (const line of sectionLines(readDoc('errors.md'), '## WebSocket close codes')) {
    const match = /^\|\s*(\d{4})\s*\|/.exec(line);
    if (match) {
      codes.add(Number(match[1]));
    }
  }
  return codes;
}

/**
 * Reads the codes of the first table under "Errors on an open connection" in docs/protocol.md: the
 * `error` frames that leave a connection open.
 */
function readFrameErrorCodes(): Set<string> {
  const codes = new Set<string>();
  const lines = sectionLines(readDoc('protocol.md'), '#### Errors on an open connection');
  const separator = lines.findIndex((line) => line.startsWith('|---'));
  const rows = lines.slice(separator + 1);
  const tableEnd = rows.findIndex((line) => !line.startsWith('|'));
  for (const line of tableEnd === -1 ? rows : rows.slice(0, tableEnd)) {
    const match = /\|\s*`([a-z0-9_]+)`[^|]*\|\s*$/.exec(line);
    if (match) {
      codes.add(match[1]);
    }
  }
  return codes;
}

/** Documented HTTP status of every error code of docs/errors.md. */
export const documentedErrorStatuses: ReadonlyMap<string, number> = readErrorStatuses();

/** Close codes that docs/errors.md lists. */
export const documentedCloseCodes: ReadonlySet<number> = readCloseCodes();

/** Codes of the `error` frames that docs/protocol.md lists for an open connection. */
export const documentedFrameErrorCodes: ReadonlySet<string> = readFrameErrorCodes();

/** The fixed close reason of a server shutdown; docs/protocol.md names it. */
export const shutdownCloseReason = 'server shutting down';

/** Tells whether `code` is in the catalogue of src/errors.ts, whose fixed texts the bodies carry. */
export function isCatalogueCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(errorCatalogue, code);
}

/**
 * Checks a JSON error body against docs/errors.md: exactly the fields `error` and
 * `error_description`, a documented code whose status is `status`, and the fixed text of that code.
 * Returns what is wrong, or null.
 */
export function errorBodyProblem(status: number, json: unknown): string | null {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    return `status ${status} without a JSON object body`;
  }

  const body = json as Record<string, unknown>;
  const fields = Object.keys(body).sort().join(',');
  if (fields !== 'error,error_description') {
    return `status ${status} with body fields ${fields} instead of error,error_description`;
  }
  if (!isCatalogueCode(body.error) || !documentedErrorStatuses.has(body.error)) {
    return `status ${status} with the undocumented error ${JSON.stringify(body.error)}`;
  }
  if (documentedErrorStatuses.get(body.error) !== status) {
    return `error ${body.error} came with status ${status}, but docs/errors.md gives ${documentedErrorStatuses.get(body.error)}`;
  }
  if (body.error_description !== errorCatalogue[body.error].description) {
    return `error ${body.error} came with a description that is not its fixed text`;
  }
  return null;
}
