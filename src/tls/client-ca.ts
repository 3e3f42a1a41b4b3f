// @peculiar/x509 resolves its algorithms through tsyringe, which throws at import time unless a
// Reflect metadata polyfill is already loaded.
import 'reflect-metadata';

import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import type { TlsOptions } from 'node:tls';

import * as x509 from '@peculiar/x509';

/** One PEM block of a file: its label (`CERTIFICATE`, `PRIVATE KEY`, ...) and its DER content. */
export interface PemBlock {
  label: string;
  der: Buffer;
}

/** A file that is not a usable certificate bundle; the message names the file and the problem. */
export class CertificateFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertificateFileError';
  }
}

/** Splits PEM text into its blocks, in file order; text outside the blocks is ignored. */
export function pemBlocks(text: string): PemBlock[] {
  return x509.PemConverter.decodeWithHeaders(text).map((block) => ({ label: block.type, der: Buffer.from(block.rawData) }));
}

/**
 * Reads a PEM bundle of CA certificates, such as the file of `--tls-client-ca`. Throws
 * `CertificateFileError` for an unreadable file, a file without certificates, a block that does not
 * parse, a private key, or a certificate that is not a CA (basic constraints `CA:TRUE`).
 */
export function readCaBundle(file: string): X509Certificate[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new CertificateFileError(`${file} could not be read (${(error as NodeJS.ErrnoException).code ?? 'error'}); check the path and its permissions.`);
  }

  const blocks = pemBlocks(text);
  if (blocks.some((block) => block.label.includes('PRIVATE KEY'))) {
    throw new CertificateFileError(`${file} contains a private key; give a file with the CA certificates only.`);
  }
  const certificates = blocks.filter((block) => block.label === 'CERTIFICATE');
  if (certificates.length === 0) {
    throw new CertificateFileError(`${file} contains no PEM certificate (-----BEGIN CERTIFICATE-----).`);
  }

  return certificates.map((block, index) => {
    const certificate = parseCertificate(block.der);
    if (!certificate) {
      throw new CertificateFileError(`${file}: certificate ${index + 1} is not a valid X.509 certificate.`);
    }
    if (!certificate.ca) {
      throw new CertificateFileError(`${file}: certificate ${index + 1} (${subjectDn(certificate)}) is not a CA certificate; list only the CAs that sign device certificates.`);
    }
    return certificate;
  });
}

/** Parses one DER certificate; undefined when it is not one. */
export function parseCertificate(der: Buffer): X509Certificate | undefined {
  try {
    return new X509Certificate(der);
  } catch {
    return undefined;
  }
}

/**
 * Options for the HTTPS listener that ask every client for a certificate. A certificate stays
 * optional, and one that no CA of the bundle signed still reaches the application, because
 * self-signed device certificates and clients without one must keep working.
 */
export function clientCertificateRequest(caFile: string | null): Pick<TlsOptions, 'requestCert' | 'rejectUnauthorized' | 'ca'> {
  if (caFile === null) {
    return {};
  }
  const ca = readCaBundle(caFile).map((certificate) => certificate.toString());
  return { requestCert: true, rejectUnauthorized: false, ca };
}

/**
 * Returns the CA of `bundle` that issued `certificate` and whose signature on it verifies, when
 * `certificate` is valid at `now`. The certificate must be issued directly by a CA of the bundle.
 */
export function issuingCa(certificate: X509Certificate, bundle: readonly X509Certificate[], now = new Date()): X509Certificate | undefined {
  if (!isValidAt(certificate, now)) {
    return undefined;
  }
  return bundle.find((ca) => isValidAt(ca, now) && certificate.checkIssued(ca) && certificate.verify(ca.publicKey));
}

/**
 * Tells whether `certificate` is self-issued and carries a signature by its own key. `checkIssued`
 * does not serve here: OpenSSL also requires `keyCertSign` in the issuer's key usage, which a
 * device's own certificate rarely has.
 */
export function isSelfSigned(certificate: X509Certificate): boolean {
  return certificate.subject === certificate.issuer && certificate.verify(certificate.publicKey);
}

/** Tells whether `now` lies within the certificate's validity period. */
export function isValidAt(certificate: X509Certificate, now: Date): boolean {
  return new Date(certificate.validFrom) <= now && now <= new Date(certificate.validTo);
}

/**
 * Returns the subject distinguished name as an RFC 4514 string, such as `CN=sensor-1, O=Example`.
 * The registered `tls_client_auth_subject_dn` and the presented certificate are both formatted here,
 * so the two compare as strings.
 */
export function subjectDn(certificate: X509Certificate): string {
  return new x509.X509Certificate(certificate.raw).subject;
}
