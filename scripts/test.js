#!/usr/bin/env node
// Runs every test: installs the system packages the tests drive (Debian's Chromium and Python
// `websockets`) when they are missing and this runs as root, type-checks, runs node:test, then
// checks that no secret from the run reached a log line.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const systemPackages = ['chromium', 'python3-websockets', 'python3-cryptography'];
const installCommand = `apt-get update && apt-get install -y ${systemPackages.join(' ')}`;

function missingSystemPackages() {
  const missing = [];
  if (!fs.existsSync('/usr/bin/chromium')) {
    missing.push('chromium');
  }
  const python = spawnSync('/usr/bin/python3', ['-c', 'import websockets'], { stdio: 'ignore' });
  if (python.status !== 0) {
    missing.push('python3-websockets');
  }
  // The DPoP device test signs its proofs with `cryptography`, independent of jose.
  const cryptography = spawnSync('/usr/bin/python3', ['-c', 'import cryptography'], { stdio: 'ignore' });
  if (cryptography.status !== 0) {
    missing.push('python3-cryptography');
  }
  return missing;
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', cwd: root, ...options });
  return result.status ?? 1;
}

function ensureSystemPackages() {
  const missing = missingSystemPackages();
  if (missing.length === 0) {
    return;
  }

  if (process.getuid?.() !== 0) {
    console.error(`The tests need ${missing.join(' and ')}. Install them as root and run npm test again:\n  ${installCommand}`);
    process.exit(1);
  }

  console.error(`Installing ${missing.join(', ')} for the tests.`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (run('apt-get', ['update'], { env }) !== 0 || run('apt-get', ['install', '-y', ...missing], { env }) !== 0) {
    console.error(`Installing the test packages failed; run this and try again:\n  ${installCommand}`);
    process.exit(1);
  }
}

function findTestFiles(directory) {
  return fs.readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(directory, entry.name);
    if (entry.isDirectory()) {
      return findTestFiles(full);
    }
    return entry.name.endsWith('.test.ts') ? [path.relative(root, full)] : [];
  }).sort();
}

ensureSystemPackages();

if (run(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '--noEmit']) !== 0) {
  console.error('Type check failed.');
  process.exit(1);
}

const selected = process.argv.slice(2);
const files = selected.length > 0 ? selected : findTestFiles(path.join(root, 'test'));

// Every log line and every secret of the run is captured here; the last step looks for the secrets
// in the lines. See test/support/capture.ts.
const captureDir = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-capture-'));
const env = { ...process.env, PORTCULLIS_TEST_CAPTURE_DIR: captureDir };
const testStatus = run(process.execPath, ['--import', 'tsx', '--test', ...files], { env });
const requiredSources = selected.length > 0 ? [] : ['--require', 'in-process,node,cli'];
const hygieneStatus = run(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/check-log-hygiene.ts'), captureDir, ...requiredSources]);
fs.rmSync(captureDir, { recursive: true, force: true });
process.exit(testStatus !== 0 ? testStatus : hygieneStatus);
