// The client certificate options: --tls-client-ca must name a readable PEM bundle of CA
// certificates, and --tls-client-cert-header needs both a trusted proxy and --tls-client-ca.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';

import { resolveOptions } from '../../src/config/load.ts';
import { OptionsError, validateOptions } from '../../src/config/options.ts';
import { createTestCa, selfSignedDeviceCertificate, type TestCa, type CertificateFiles } from '../support/device-certificates.ts';
import { temporaryDataDir } from '../support/server.ts';

let directory: string;
let ca: TestCa;
let otherCa: TestCa;
let leaf: CertificateFiles;

before(async () => {
  directory = temporaryDataDir();
  ca = await createTestCa(directory, 'Options Test CA');
  otherCa = await createTestCa(directory, 'Options Second CA');
  leaf = await selfSignedDeviceCertificate(directory, 'leaf-device');
});

function writeFile(name: string, content: string): string {
  const file = path.join(directory, name);
  fs.writeFileSync(file, content);
  return file;
}

function assertOptionsError(input: Record<string, unknown>, ...patterns: RegExp[]): void {
  assert.throws(() => validateOptions(input), (error: unknown) => {
    assert.ok(error instanceof OptionsError, `expected an OptionsError, got ${String(error)}`);
    assert.equal(error.exitCode, 2);
    for (const pattern of patterns) {
      assert.match(error.message, pattern);
    }
    return true;
  });
}

describe('tlsClientCaFile', () => {
  test('defaults to none', () => {
    const options = validateOptions({});

    assert.equal(options.tlsClientCaFile, null);
    assert.equal(options.tlsClientCertHeader, null);
  });

  test('accepts a bundle of two CAs', () => {
    const bundle = writeFile('bundle.pem', `${ca.certPem}\n${otherCa.certPem}`);

    assert.equal(validateOptions({ tlsClientCaFile: bundle }).tlsClientCaFile, bundle);
  });

  test('flag and environment variable set it', () => {
    assert.equal(resolveOptions({ 'tls-client-ca': ca.certFile }, {}).tlsClientCaFile, ca.certFile);
    assert.equal(resolveOptions({}, { PORTCULLIS_TLS_CLIENT_CA: ca.certFile }).tlsClientCaFile, ca.certFile);
  });

  const invalid = [
    { name: 'missing file', file: () => path.join(directory, 'absent.pem'), pattern: /could not be read \(ENOENT\)/ },
    { name: 'file without a certificate', file: () => writeFile('text.pem', 'not a certificate\n'), pattern: /contains no PEM certificate/ },
    { name: 'damaged certificate', file: () => writeFile('damaged.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), pattern: /certificate 1 is not a valid X\.509 certificate/ },
    { name: 'private key', file: () => writeFile('with-key.pem', `${ca.certPem}\n${ca.keyPem}`), pattern: /contains a private key/ },
    { name: 'device certificate', file: () => leaf.certFile, pattern: /is not a CA certificate/ },
  ];
  for (const { name, file, pattern } of invalid) {
    test(`rejects a ${name}`, () => {
      assertOptionsError({ tlsClientCaFile: file() }, /^tlsClientCaFile \(--tls-client-ca\): /, pattern);
    });
  }
});

describe('tlsClientCertHeader', () => {
  test('is stored in lower case', () => {
    const options = validateOptions({ tlsClientCaFile: ca.certFile, trustedProxies: ['10.0.0.5'], tlsClientCertHeader: 'Client-Cert' });

    assert.equal(options.tlsClientCertHeader, 'client-cert');
  });

  test('flag sets it', () => {
    const options = resolveOptions({ 'tls-client-ca': ca.certFile, 'trusted-proxy': ['10.0.0.5'], 'tls-client-cert-header': 'X-SSL-Client-Cert' }, {});

    assert.equal(options.tlsClientCertHeader, 'x-ssl-client-cert');
  });

  test('needs a trusted proxy', () => {
    assertOptionsError({ tlsClientCaFile: ca.certFile, tlsClientCertHeader: 'Client-Cert' }, /needs trustedProxies \(--trusted-proxy\)/);
  });

  test('needs tlsClientCaFile', () => {
    assertOptionsError({ trustedProxies: ['10.0.0.5'], tlsClientCertHeader: 'Client-Cert' }, /needs tlsClientCaFile \(--tls-client-ca\)/);
  });

  test('rejects a name that is not a header name', () => {
    assertOptionsError({ tlsClientCaFile: ca.certFile, trustedProxies: ['10.0.0.5'], tlsClientCertHeader: 'Client Cert:' }, /must be an HTTP header name/);
  });
});
