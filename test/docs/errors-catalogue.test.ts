// Keeps docs/errors.md and src/errors.ts in sync. The "Error codes" table must list exactly the codes
// of errorCatalogue with the same statuses, and the "WebSocket close codes" table every closeCodes value.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { closeCodes, errorCatalogue } from '../../src/errors.ts';

const errorsDocPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/errors.md');

// Close codes that the docs list although closeCodes does not name them. `ws` sends 1007 for a text
// frame that is not valid UTF-8.
const closeCodesSentOnlyByWs = [1007];

/** Returns the lines of the `## <title>` section, up to the next `## ` heading. */
function sectionLines(markdown: string, title: string): string[] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.trim() === `## ${title}`);
  assert.notEqual(start, -1, `docs/errors.md has no "## ${title}" section`);

  const rest = lines.slice(start + 1);
  const end = rest.findIndex((line) => line.startsWith('## '));
  return end === -1 ? rest : rest.slice(0, end);
}

/** Reads the rows "| `code` | status | ..." of the "Error codes" table as code → status. */
function documentedErrorCodes(markdown: string): Map<string, number> {
  const documented = new Map<string, number>();
  for (const line of sectionLines(markdown, 'Error codes')) {
    const match = /^\|\s*`([a-z0-9_]+)`\s*\|\s*(\d{3})\s*\|/.exec(line);
    if (!match) {
      continue;
    }
    assert.ok(!documented.has(match[1]), `docs/errors.md lists ${match[1]} twice`);
    documented.set(match[1], Number(match[2]));
  }
  return documented;
}

/** Reads the first column of the "WebSocket close codes" table. */
function documentedCloseCodes(markdown: string): number[] {
  const documented: number[] = [];
  for (const line of sectionLines(markdown, 'WebSocket close codes')) {
    const match = /^\|\s*(\d{4})\s*\|/.exec(line);
    if (match) {
      documented.push(Number(match[1]));
    }
  }
  return documented;
}

const markdown = fs.readFileSync(errorsDocPath, 'utf8');
const catalogueCodes = Object.keys(errorCatalogue).sort();

test('error codes table is not empty', () => {
  assert.ok(documentedErrorCodes(markdown).size > 0, 'no "| `code` | status |" rows found under "## Error codes"');
});

test('every catalogue code is documented', () => {
  const documented = documentedErrorCodes(markdown);
  const undocumented = catalogueCodes.filter((code) => !documented.has(code));
  assert.deepEqual(undocumented, [], 'codes in errorCatalogue that docs/errors.md does not list');
});

test('every documented code is in the catalogue', () => {
  const documented = documentedErrorCodes(markdown);
  const unknown = [...documented.keys()].filter((code) => !Object.hasOwn(errorCatalogue, code)).sort();
  assert.deepEqual(unknown, [], 'codes in docs/errors.md that errorCatalogue does not define');
});

test('documented statuses match the catalogue', () => {
  const documented = documentedErrorCodes(markdown);
  for (const [code, entry] of Object.entries(errorCatalogue)) {
    if (!documented.has(code)) {
      continue;
    }
    assert.equal(documented.get(code), entry.status, `status of ${code} in docs/errors.md`);
  }
});

test('every close code is documented', () => {
  const documented = new Set(documentedCloseCodes(markdown));
  const undocumented = Object.entries(closeCodes)
    .filter(([, code]) => !documented.has(code))
    .map(([name, code]) => `${name} (${code})`);
  assert.deepEqual(undocumented, [], 'closeCodes values that docs/errors.md does not list');
});

test('every documented close code is known', () => {
  const known = new Set<number>([...Object.values(closeCodes), ...closeCodesSentOnlyByWs]);
  const unknown = documentedCloseCodes(markdown).filter((code) => !known.has(code));
  assert.deepEqual(unknown, [], 'close codes in docs/errors.md that neither closeCodes nor ws defines');
});
