import type { X509Certificate } from 'node:crypto';
import fs from 'node:fs';

import { certificateThumbprint } from '../gateway/client-certificate.ts';
import type { Store } from '../store/database.ts';
import { listDevices, type Device } from '../store/devices.ts';
import { issuingCa, isSelfSigned, parseCertificate, pemBlocks, readCaBundle, subjectDn } from '../tls/client-ca.ts';
import { CommandError } from './output.ts';

/** A device certificate checked for registration, with the method it authenticates by. */
export interface DeviceCertificate {
  /** The certificate alone, re-encoded as PEM, for the `certificate` column. */
  pem: string;
  authMethod: 'tls_client_auth' | 'self_signed_tls_client_auth';
  /** RFC 4514 subject DN, the registered `tls_client_auth_subject_dn` of a CA-signed certificate. */
  subjectDn: string;
  /** `x5t#S256` of the certificate. */
  thumbprint: string;
}

function invalid(message: string): CommandError {
  return new CommandError('invalid_certificate', message, 2);
}

/**
 * Reads the PEM file of `devices add --certificate` and decides how the device authenticates: a
 * self-signed certificate by `self_signed_tls_client_auth`, one that a CA of `caFile` signed by
 * `tls_client_auth`. Rejects a file that is not exactly one certificate, one that contains a private
 * key, a CA certificate, an expired certificate, and a CA-signed one that no CA of `caFile` signed.
 */
export function readDeviceCertificate(file: string, caFile: string | null, now = new Date()): DeviceCertificate {
  const certificate = readSingleCertificate(file);
  if (certificate.ca) {
    throw invalid(`--certificate ${file} is a CA certificate; register the device's own certificate.`);
  }
  if (new Date(certificate.validTo) < now) {
    throw invalid(`--certificate ${file} expired on ${new Date(certificate.validTo).toISOString()}; issue the device a new certificate.`);
  }

  const registration = { pem: certificate.toString(), subjectDn: subjectDn(certificate), thumbprint: certificateThumbprint(certificate) };
  if (isSelfSigned(certificate)) {
    return { ...registration, authMethod: 'self_signed_tls_client_auth' };
  }

  if (caFile === null) {
    throw invalid(`--certificate ${file} is signed by ${certificate.issuer.replace(/\n/g, ', ')}, but no --tls-client-ca is configured; pass the server's --tls-client-ca bundle, or register a self-signed certificate.`);
  }
  if (!issuingCa(certificate, readCaBundle(caFile), now)) {
    throw invalid(`--certificate ${file} is not signed by a currently valid CA in --tls-client-ca ${caFile}.`);
  }
  // oidc-provider requires a subject value for tls_client_auth.
  if (registration.subjectDn === '') {
    throw invalid(`--certificate ${file} has an empty subject; a CA-signed device certificate is matched by its subject DN.`);
  }
  return { ...registration, authMethod: 'tls_client_auth' };
}

function readSingleCertificate(file: string): X509Certificate {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw invalid(`--certificate ${file} could not be read (${(error as NodeJS.ErrnoException).code ?? 'error'}); check the path.`);
  }

  const blocks = pemBlocks(text);
  // The private key stays on the device: the server needs only the certificate.
  if (blocks.some((block) => block.label.includes('PRIVATE KEY'))) {
    throw invalid(`--certificate ${file} contains a private key; register the certificate only and keep the key on the device.`);
  }
  const certificates = blocks.filter((block) => block.label === 'CERTIFICATE');
  if (certificates.length !== 1 || blocks.length !== 1) {
    throw invalid(`--certificate ${file} must hold exactly one PEM certificate (-----BEGIN CERTIFICATE-----), found ${certificates.length} among ${blocks.length} PEM blocks.`);
  }

  const certificate = parseCertificate(certificates[0].der);
  if (!certificate) {
    throw invalid(`--certificate ${file} is not a valid X.509 certificate.`);
  }
  return certificate;
}

/**
 * Reads a certificate for a new device as `readDeviceCertificate` does, and rejects it when a
 * registered device already uses it or, for a CA-signed certificate, its subject DN.
 */
export async function readNewDeviceCertificate(store: Store, file: string, caFile: string | null): Promise<DeviceCertificate> {
  const registration = readDeviceCertificate(file, caFile);
  const conflicting = conflictingDevice(await listDevices(store), registration);
  if (!conflicting) {
    return registration;
  }

  const shared = registration.authMethod === 'tls_client_auth' ? `the same subject DN (${registration.subjectDn})` : 'the same certificate';
  throw new CommandError('certificate_taken', `Device "${conflicting.client_id}" is registered with ${shared}; each device needs its own, or one device could authenticate as the other.`, 2);
}

/**
 * Returns the device that another device with `registration` could authenticate as. A CA-signed
 * certificate authenticates by its subject DN, so two such devices must not share one. A
 * self-signed certificate authenticates by itself, so two devices must not share one either.
 */
export function conflictingDevice(devices: readonly Device[], registration: DeviceCertificate): Device | undefined {
  return devices.find((device) => {
    if (device.certificate === null || device.auth_method !== registration.authMethod) {
      return false;
    }
    const registered = parseCertificate(pemBlocks(device.certificate)[0]?.der ?? Buffer.alloc(0));
    if (!registered) {
      return false;
    }
    return registration.authMethod === 'tls_client_auth'
      ? subjectDn(registered) === registration.subjectDn
      : certificateThumbprint(registered) === registration.thumbprint;
  });
}
