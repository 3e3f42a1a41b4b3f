// `portcullis devices add <id> --certificate FILE` and `--dpop-required`, run through the real CLI:
// a self-signed certificate registers self_signed_tls_client_auth, one signed by a CA of
// --tls-client-ca registers tls_client_auth, and anything else is rejected with exit code 2.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';

import { createTestCa, issueDeviceCertificate, selfSignedDeviceCertificate, type CertificateFiles, type TestCa } from '../support/device-certificates.ts';
import { runCli, temporaryDataDir, type CliResult } from '../support/server.ts';

let directory: string;
let dataDir: string;
let ca: TestCa;
let caSigned: CertificateFiles;
let selfSigned: CertificateFiles;

before(async () => {
  directory = temporaryDataDir();
  dataDir = temporaryDataDir();
  ca = await createTestCa(directory, 'CLI Test CA');
  caSigned = await issueDeviceCertificate(directory, ca, 'cli-ca-device');
  selfSigned = await selfSignedDeviceCertificate(directory, 'cli-self-device');
});

function addWithCertificate(clientId: string, file: string, extraArgs: string[] = []): Promise<CliResult> {
  return runCli(dataDir, ['devices', 'add', clientId, '--certificate', file, ...extraArgs]);
}

function assertRejected(result: CliResult, pattern: RegExp): void {
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, pattern);
}

async function listedDevice(clientId: string): Promise<Record<string, unknown> | undefined> {
  const listed = await runCli(dataDir, ['devices', 'list', '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  return (JSON.parse(listed.stdout) as Record<string, unknown>[]).find((row) => row.client_id === clientId);
}

describe('devices add --certificate', () => {
  test('self-signed certificate registers self_signed_tls_client_auth', async () => {
    const result = await addWithCertificate('cli-self-device', selfSigned.certFile);

    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), {
      client_id: 'cli-self-device',
      token_endpoint_auth_method: 'self_signed_tls_client_auth',
      'x5t#S256': selfSigned.thumbprint,
      scope: 'publish:devices/{client_id}/# subscribe:devices/{client_id}/commands',
    });
    assert.equal((await listedDevice('cli-self-device'))?.auth_method, 'self_signed_tls_client_auth');
  });

  test('CA-signed certificate registers tls_client_auth', async () => {
    const result = await addWithCertificate('cli-ca-device', caSigned.certFile, ['--tls-client-ca', ca.certFile]);

    assert.equal(result.code, 0, result.stderr);
    const output = JSON.parse(result.stdout) as Record<string, unknown>;
    assert.equal(output.token_endpoint_auth_method, 'tls_client_auth');
    assert.equal(output.tls_client_auth_subject_dn, 'CN=cli-ca-device');
    assert.equal(output['x5t#S256'], caSigned.thumbprint);
    assert.equal((await listedDevice('cli-ca-device'))?.auth_method, 'tls_client_auth');
  });

  test('CA-signed certificate without --tls-client-ca is rejected', async () => {
    assertRejected(await addWithCertificate('no-ca-device', caSigned.certFile), /is signed by CN=CLI Test CA, but no --tls-client-ca is configured/);
  });

  test('certificate of another CA is rejected', async () => {
    const otherCa = await createTestCa(directory, 'Other CLI CA');
    const foreign = await issueDeviceCertificate(directory, otherCa, 'foreign-device');

    assertRejected(await addWithCertificate('foreign-device', foreign.certFile, ['--tls-client-ca', ca.certFile]), /is not signed by a currently valid CA in --tls-client-ca/);
  });

  test('expired certificate is rejected', async () => {
    const expired = await selfSignedDeviceCertificate(directory, 'expired-device', { notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2021-01-01T00:00:00Z') });

    assertRejected(await addWithCertificate('expired-device', expired.certFile), /expired on 2021-01-01T00:00:00\.000Z/);
  });

  const badFiles = [
    { name: 'private key', file: () => selfSigned.keyFile, pattern: /contains a private key; register the certificate only/ },
    { name: 'certificate with its key', file: () => writeFile('pair.pem', `${selfSigned.certPem}${selfSigned.keyPem}`), pattern: /contains a private key/ },
    { name: 'two certificates', file: () => writeFile('two.pem', `${selfSigned.certPem}${caSigned.certPem}`), pattern: /must hold exactly one PEM certificate .* found 2 among 2 PEM blocks/ },
    { name: 'text file', file: () => writeFile('text.pem', 'hello\n'), pattern: /must hold exactly one PEM certificate .* found 0 among 0 PEM blocks/ },
    { name: 'damaged certificate', file: () => writeFile('damaged.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), pattern: /is not a valid X\.509 certificate/ },
    { name: 'CA certificate', file: () => ca.certFile, pattern: /is a CA certificate/ },
    { name: 'missing file', file: () => path.join(directory, 'absent.pem'), pattern: /could not be read \(ENOENT\)/ },
  ];
  for (const { name, file, pattern } of badFiles) {
    test(`${name} is rejected`, async () => {
      const result = await addWithCertificate('bad-file-device', file());

      assertRejected(result, pattern);
      assert.match(result.stderr, /^portcullis devices: --certificate /m);
    });
  }

  test('same self-signed certificate twice is rejected', async () => {
    assertRejected(await addWithCertificate('copy-device', selfSigned.certFile), /Device "cli-self-device" is registered with the same certificate/);
  });

  test('same subject DN twice is rejected', async () => {
    const sameSubject = await issueDeviceCertificate(directory, ca, 'cli-ca-device');

    assertRejected(await addWithCertificate('twin-device', sameSubject.certFile, ['--tls-client-ca', ca.certFile]), /Device "cli-ca-device" is registered with the same subject DN \(CN=cli-ca-device\)/);
  });

  test('--certificate with --public-key is rejected', async () => {
    const result = await runCli(dataDir, ['devices', 'add', 'both-device', '--certificate', selfSigned.certFile, '--public-key', selfSigned.certFile]);

    assertRejected(result, /Give either --public-key or --certificate, not both/);
  });
});

describe('devices add --dpop-required', () => {
  test('secret device is stored with DPoP required', async () => {
    const result = await runCli(dataDir, ['devices', 'add', 'dpop-secret-device', '--dpop-required']);

    assert.equal(result.code, 0, result.stderr);
    const output = JSON.parse(result.stdout) as Record<string, unknown>;
    assert.equal(output.dpop_bound_access_tokens, true);
    assert.equal(typeof output.client_secret, 'string');
    assert.equal((await listedDevice('dpop-secret-device'))?.dpop_required, true);
  });

  test('certificate device is stored with DPoP required', async () => {
    const certificate = await selfSignedDeviceCertificate(directory, 'dpop-cert-device');

    const result = await addWithCertificate('dpop-cert-device', certificate.certFile, ['--dpop-required']);

    assert.equal(result.code, 0, result.stderr);
    assert.equal((JSON.parse(result.stdout) as Record<string, unknown>).dpop_bound_access_tokens, true);
    const listed = await listedDevice('dpop-cert-device');
    assert.equal(listed?.auth_method, 'self_signed_tls_client_auth');
    assert.equal(listed?.dpop_required, true);
  });

  test('text list shows method and DPoP', async () => {
    const listed = await runCli(dataDir, ['devices', 'list']);

    assert.equal(listed.code, 0, listed.stderr);
    const lines = listed.stdout.split('\n');
    assert.match(lines.find((line) => line.startsWith('dpop-cert-device\t')) ?? '', /^dpop-cert-device\tself_signed_tls_client_auth\tdpop-required\t/);
    assert.match(lines.find((line) => line.startsWith('cli-ca-device\t')) ?? '', /^cli-ca-device\ttls_client_auth\t-\t/);
  });
});

function writeFile(name: string, content: string): string {
  const file = path.join(directory, name);
  fs.writeFileSync(file, content);
  return file;
}
