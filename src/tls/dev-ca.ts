// @peculiar/x509 resolves its algorithms through tsyringe, which throws at import time unless a
// Reflect metadata polyfill is already loaded. Importing the polyfill first keeps that need here.
import 'reflect-metadata';

import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

import * as x509 from '@peculiar/x509';

import { OptionsError } from '../config/options.ts';

x509.cryptoProvider.set(webcrypto as Crypto);

/** PEM certificate and key for the HTTPS listener, plus the CA file clients should trust. */
export interface TlsMaterial {
  /** PEM certificate (chain) for `https.createServer({ cert })`. */
  cert: string;
  /** PEM private key for `https.createServer({ key })`. */
  key: string;
  /** Path of the development CA certificate that clients must trust, or null for operator-supplied files. */
  caFile: string | null;
  /** True when this call wrote a new certificate (CA or server) to disk. */
  generated: boolean;
}

interface PemPair {
  certPem: string;
  keyPem: string;
}

interface DevCa extends PemPair {
  signingKey: CryptoKey;
}

interface DevCaPaths {
  tlsDir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
}

const dayMs = 24 * 60 * 60 * 1000;
const caValidityDays = 3650;
// One day under the 398-day maximum that Apple platforms enforce for publicly trusted TLS server
// certificates. A private CA is not bound by it, but staying under it costs nothing.
const serverValidityDays = 397;
const renewBeforeDays = 30;
// Backdating notBefore keeps a freshly issued certificate valid on a client whose clock lags a little.
const backdateMs = 60 * 60 * 1000;

const caName = 'CN=Portcullis Development CA';
const serverName = 'CN=localhost';
const serverHosts = ['localhost'];
const serverIps = ['127.0.0.1', '::1'];

const keyAlgorithm = { name: 'ECDSA', namedCurve: 'P-256' };
const signingAlgorithm = { name: 'ECDSA', hash: 'SHA-256' };

/**
 * Loads the listener's TLS material: the operator's `--tls-cert`/`--tls-key` files when given, else
 * a development CA and `localhost` certificate kept under `<dataDir>/tls/` (created on first use,
 * the server certificate re-issued within 30 days of expiry).
 */
export async function loadTlsMaterial(options: { dataDir: string; certFile: string | null; keyFile: string | null }): Promise<TlsMaterial> {
  if (options.certFile !== null || options.keyFile !== null) {
    return loadGivenMaterial(options.certFile, options.keyFile);
  }

  return loadDevCaMaterial(devCaPaths(options.dataDir));
}

async function loadGivenMaterial(certFile: string | null, keyFile: string | null): Promise<TlsMaterial> {
  if (certFile === null) {
    throw new OptionsError('tlsCertFile (--tls-cert) is missing but tlsKeyFile (--tls-key) is set; pass both --tls-cert and --tls-key, or neither to use the development CA.');
  }

  if (keyFile === null) {
    throw new OptionsError('tlsKeyFile (--tls-key) is missing but tlsCertFile (--tls-cert) is set; pass both --tls-cert and --tls-key, or neither to use the development CA.');
  }

  const cert = await readOptionFile('tlsCertFile (--tls-cert)', certFile);
  const key = await readOptionFile('tlsKeyFile (--tls-key)', keyFile);
  checkGivenPair({ certPem: cert, keyPem: key }, certFile, keyFile);

  return { cert, key, caFile: null, generated: false };
}

async function readOptionFile(option: string, file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new OptionsError(`${option}: failed to read ${file} (${code}); check the path and its permissions.`);
  }
}

// Checking here lets the error name the option, where https.createServer would only report "key
// values mismatch". The messages leave out file contents because the key file is a secret.
function checkGivenPair(pair: PemPair, certFile: string, keyFile: string): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pair.certPem);
  } catch {
    throw new OptionsError(`tlsCertFile (--tls-cert): ${certFile} is not a valid PEM certificate; pass the server certificate first, followed by its chain.`);
  }

  let key: KeyObject;
  try {
    key = createPrivateKey(pair.keyPem);
  } catch {
    throw new OptionsError(`tlsKeyFile (--tls-key): ${keyFile} is not a valid PEM private key; pass an unencrypted PKCS#8, PKCS#1 or SEC1 key.`);
  }

  if (!cert.checkPrivateKey(key)) {
    throw new OptionsError(`tlsKeyFile (--tls-key): ${keyFile} is not the private key of the first certificate in ${certFile}; pass the matching pair.`);
  }
}

function devCaPaths(dataDir: string): DevCaPaths {
  const tlsDir = path.join(dataDir, 'tls');
  return {
    tlsDir,
    caCert: path.join(dataDir, 'ca.pem'),
    caKey: path.join(tlsDir, 'ca-key.pem'),
    serverCert: path.join(tlsDir, 'server.pem'),
    serverKey: path.join(tlsDir, 'server-key.pem'),
  };
}

// NOTE: two processes starting on the same empty dataDir at once can each create a CA. Every file is
// still whole, and the pairing checks below re-issue whatever does not match on the next start.
async function loadDevCaMaterial(paths: DevCaPaths): Promise<TlsMaterial> {
  const now = new Date();
  await fs.mkdir(paths.tlsDir, { recursive: true, mode: 0o700 });

  const storedCa = await readUsableCa(paths, now);
  const ca = storedCa ?? (await createCa(now));
  if (storedCa === null) {
    await writeFileAtomic(paths.caKey, ca.keyPem, 0o600);
    await writeFileAtomic(paths.caCert, ca.certPem, 0o644);
  }

  const storedServer = storedCa === null ? null : await readUsableServer(paths, ca, now);
  if (storedServer !== null) {
    return { cert: storedServer.certPem, key: storedServer.keyPem, caFile: paths.caCert, generated: false };
  }

  const server = await issueServerCert(ca, now);
  await writeFileAtomic(paths.serverKey, server.keyPem, 0o600);
  await writeFileAtomic(paths.serverCert, server.certPem, 0o644);

  return { cert: server.certPem, key: server.keyPem, caFile: paths.caCert, generated: true };
}

// A missing, damaged, mismatched or nearly expired CA is replaced as a whole. Clients then have to
// trust the new ca.pem, so the caller learns of it through `generated`.
async function readUsableCa(paths: DevCaPaths, now: Date): Promise<DevCa | null> {
  const pair = await readStoredPair(paths.caCert, paths.caKey);
  if (pair === null) {
    return null;
  }

  const cert = parsePair(pair);
  if (cert === null || !cert.ca || expiresSoon(pair.certPem, now)) {
    return null;
  }

  return { ...pair, signingKey: await importSigningKey(pair.keyPem) };
}

async function readUsableServer(paths: DevCaPaths, ca: DevCa, now: Date): Promise<PemPair | null> {
  const pair = await readStoredPair(paths.serverCert, paths.serverKey);
  if (pair === null) {
    return null;
  }

  const cert = parsePair(pair);
  if (cert === null || expiresSoon(pair.certPem, now)) {
    return null;
  }

  // A server certificate left over from an earlier CA, or from a version with other names, would
  // fail verification on every client, so it is re-issued rather than served.
  const caCert = new X509Certificate(ca.certPem);
  if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey) || !coversServerNames(cert)) {
    return null;
  }

  return pair;
}

async function readStoredPair(certFile: string, keyFile: string): Promise<PemPair | null> {
  const certPem = await readIfPresent(certFile);
  const keyPem = await readIfPresent(keyFile);
  if (certPem === null || keyPem === null) {
    return null;
  }

  return { certPem, keyPem };
}

// Only a missing file leads to generation. Other read errors are raised, so that a permission problem
// does not end in replacing a CA that clients already trust.
async function readIfPresent(file: string): Promise<string | null> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return null;
    }

    throw error;
  }
}

function parsePair(pair: PemPair): X509Certificate | null {
  try {
    const cert = new X509Certificate(pair.certPem);
    return cert.checkPrivateKey(createPrivateKey(pair.keyPem)) ? cert : null;
  } catch {
    return null;
  }
}

function expiresSoon(certPem: string, now: Date): boolean {
  const notAfter = new x509.X509Certificate(certPem).notAfter;
  return notAfter.getTime() - now.getTime() < renewBeforeDays * dayMs;
}

function coversServerNames(cert: X509Certificate): boolean {
  const hostsCovered = serverHosts.every((host) => cert.checkHost(host) !== undefined);
  const ipsCovered = serverIps.every((ip) => cert.checkIP(ip) !== undefined);
  return hostsCovered && ipsCovered;
}

async function createCa(now: Date): Promise<DevCa> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: caName,
    notBefore: new Date(now.getTime() - backdateMs),
    notAfter: new Date(now.getTime() + caValidityDays * dayMs),
    keys,
    signingAlgorithm,
    // NOTE: without a nameConstraints extension, anyone who can read ca-key.pem can issue certificates
    // for any host that machines trusting ca.pem accept. That is why the key is 0600 in a 0700 folder.
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });

  return { certPem: cert.toString('pem'), keyPem: exportPrivateKey(keys.privateKey), signingKey: keys.privateKey };
}

async function issueServerCert(ca: DevCa, now: Date): Promise<PemPair> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const keys = await generateKeys();

  // The server certificate must not outlive the CA that vouches for it.
  const fullTerm = now.getTime() - backdateMs + serverValidityDays * dayMs;
  const notAfter = new Date(Math.min(fullTerm, caCert.notAfter.getTime()));

  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: serverName,
    issuer: caCert.subjectName,
    notBefore: new Date(now.getTime() - backdateMs),
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...serverHosts.map((value) => ({ type: 'dns' as const, value })),
        ...serverIps.map((value) => ({ type: 'ip' as const, value })),
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });

  return { certPem: cert.toString('pem'), keyPem: exportPrivateKey(keys.privateKey) };
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(keyAlgorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function importSigningKey(keyPem: string): Promise<CryptoKey> {
  const der = createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' });
  return (await webcrypto.subtle.importKey('pkcs8', der, keyAlgorithm, false, ['sign'])) as CryptoKey;
}

function exportPrivateKey(privateKey: CryptoKey): string {
  return KeyObject.from(privateKey as webcrypto.CryptoKey).export({ type: 'pkcs8', format: 'pem' }) as string;
}

// RFC 5280 section 4.1.2.2 caps serials at 20 octets. The library prefixes a zero octet when the top
// bit is set, so 16 random octets encode as at most 17 and stay positive.
function randomSerial(): string {
  return randomBytes(16).toString('hex');
}

// Written beside the target and renamed over it, so a crash leaves the old file or the new one,
// never half a key. The explicit chmod makes the mode exact whatever the process umask is.
async function writeFileAtomic(file: string, contents: string, mode: number): Promise<void> {
  const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const handle = await fs.open(temp, 'wx', mode);
    try {
      await handle.chmod(mode);
      await handle.writeFile(contents);
      await handle.sync();
    } finally {
      await handle.close();
    }

    await fs.rename(temp, file);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
}
