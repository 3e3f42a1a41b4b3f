// The pieces of the certificate binding that need no server: reading a certificate that a proxy
// forwarded, and reading the confirmation claim of a token.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, test } from 'node:test';

import { certificateThumbprint, parseForwardedCertificate } from '../../src/gateway/client-certificate.ts';
import { boundThumbprint } from '../../src/gateway/guard/certificate-binding.ts';
import type { VerifiedToken } from '../../src/gateway/token-verifier.ts';
import { selfSignedDeviceCertificate, type CertificateFiles } from '../support/device-certificates.ts';
import { temporaryDataDir } from '../support/server.ts';

let device: CertificateFiles;
let der: Buffer;

before(async () => {
  device = await selfSignedDeviceCertificate(temporaryDataDir(), 'forwarded-device');
  der = new X509Certificate(device.certPem).raw;
});

describe('parseForwardedCertificate', () => {
  const accepted = [
    { name: 'RFC 9440 byte sequence', value: () => `:${der.toString('base64')}:` },
    { name: 'byte sequence with spaces around', value: () => `  :${der.toString('base64')}:  ` },
    { name: 'nginx escaped PEM', value: () => encodeURIComponent(device.certPem) },
  ];
  for (const { name, value } of accepted) {
    test(`reads ${name}`, () => {
      const certificate = parseForwardedCertificate(value());

      assert.ok(certificate);
      assert.equal(certificateThumbprint(certificate), device.thumbprint);
    });
  }

  const rejected = [
    { name: 'empty value', value: () => '' },
    { name: 'nginx placeholder', value: () => '(null)' },
    { name: 'base64 without colons', value: () => der.toString('base64') },
    { name: 'byte sequence of other bytes', value: () => ':AAECAw==:' },
    { name: 'broken percent escape', value: () => '%E0%A4%A' },
    { name: 'two certificates', value: () => encodeURIComponent(`${device.certPem}${device.certPem}`) },
    { name: 'private key', value: () => encodeURIComponent(device.keyPem) },
  ];
  for (const { name, value } of rejected) {
    test(`ignores ${name}`, () => {
      assert.equal(parseForwardedCertificate(value()), undefined);
    });
  }
});

describe('boundThumbprint', () => {
  function token(payload: Record<string, unknown>): VerifiedToken {
    return { sub: 'device', clientId: 'device', exp: 0, jti: 'jti', grantId: null, scope: '', payload };
  }

  test('returns the x5t#S256 member', () => {
    assert.equal(boundThumbprint(token({ cnf: { 'x5t#S256': 'abc' } })), 'abc');
  });

  test('token without cnf is unbound', () => {
    assert.equal(boundThumbprint(token({})), undefined);
  });

  test('DPoP-bound token is not certificate-bound', () => {
    assert.equal(boundThumbprint(token({ cnf: { jkt: 'key-thumbprint' } })), undefined);
  });

  test('non-string thumbprint can never match', () => {
    assert.equal(boundThumbprint(token({ cnf: { 'x5t#S256': 42 } })), null);
  });
});
