// Certificate-bound tokens behind a TLS-terminating proxy: a trusted proxy (127.0.0.1, on the plain
// listener) forwards the client certificate in the --tls-client-cert-header header, either as RFC
// 9440 `:base64-DER:` or as nginx's URL-encoded PEM. The same header from any other peer is ignored.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { decodeJwt } from 'jose';
import { Agent } from 'undici';

import { secretRecordingFetch } from '../support/capture.ts';
import { createTestCa, issueDeviceCertificate, selfSignedDeviceCertificate, type CertificateFiles } from '../support/device-certificates.ts';
import { addCertificateDevice, connectWithCertificate, mtlsFetch, requestCertificateToken } from '../support/mtls.ts';
import { fetchThrough } from '../support/oauth-flows.ts';
import { startTestServer, temporaryDataDir, type TestServer } from '../support/server.ts';

const header = 'Client-Cert';
// Linux routes all of 127.0.0.0/8 to loopback, so this source address reaches the server as a peer
// that is not the trusted proxy.
const untrustedAddress = '127.0.0.2';

let server: TestServer;
let device: CertificateFiles;
let unrelated: CertificateFiles;
let accessToken: string;

/** RFC 9440 form: a structured-field byte sequence of the DER certificate. */
function byteSequence(certificate: CertificateFiles): string {
  return `:${new X509Certificate(certificate.certPem).raw.toString('base64')}:`;
}

/** nginx `$ssl_client_escaped_cert` form: the PEM certificate, URL-encoded. */
function escapedPem(certificate: CertificateFiles): string {
  return encodeURIComponent(certificate.certPem);
}

function plainUrl(path: string, scheme = 'http'): string {
  return `${scheme}://127.0.0.1:${server.running.plainPort}${path}`;
}

function forwarded(certificate?: string): Record<string, string> {
  return certificate === undefined ? { 'X-Forwarded-Proto': 'https' } : { 'X-Forwarded-Proto': 'https', [header]: certificate };
}

before(async () => {
  const directory = temporaryDataDir();
  const ca = await createTestCa(directory, 'Proxy Test Device CA');
  device = await issueDeviceCertificate(directory, ca, 'proxied-device');
  unrelated = await selfSignedDeviceCertificate(directory, 'unrelated-device');

  server = await startTestServer({ tlsClientCaFile: ca.certFile, trustedProxies: ['127.0.0.1'], plainPort: 0, tlsClientCertHeader: header });
  await addCertificateDevice(server, 'proxied-device', device);
  const response = await requestCertificateToken(secretRecordingFetch(fetch), plainUrl('/oauth/token'), 'proxied-device', forwarded(byteSequence(device)));
  assert.equal(response.status, 200, JSON.stringify(response.body));
  accessToken = response.body.access_token as string;
});

after(async () => {
  await server?.close();
});

describe('trusted proxy forwards the certificate', () => {
  test('token is bound to the forwarded certificate', () => {
    assert.deepEqual(decodeJwt(accessToken).cnf, { 'x5t#S256': device.thumbprint });
  });

  const forms = [
    { name: 'RFC 9440 byte sequence', encode: byteSequence },
    { name: 'nginx escaped PEM', encode: escapedPem },
  ];
  for (const { name, encode } of forms) {
    test(`right certificate connects (${name})`, async () => {
      const outcome = await connectWithCertificate(server, { clientId: 'proxied-device', accessToken, url: plainUrl('/ws', 'ws'), headers: forwarded(encode(device)) });

      assert.equal(outcome.status, 101);
      assert.equal(outcome.welcome?.client_id, 'proxied-device');
      outcome.socket?.close();
    });
  }

  test('another certificate is refused', async () => {
    const outcome = await connectWithCertificate(server, { clientId: 'proxied-device', accessToken, url: plainUrl('/ws', 'ws'), headers: forwarded(byteSequence(unrelated)) });

    assert.equal(outcome.status, 401);
    assert.equal(outcome.error, 'certificate_mismatch');
  });

  test('no forwarded certificate is refused', async () => {
    const outcome = await connectWithCertificate(server, { clientId: 'proxied-device', accessToken, url: plainUrl('/ws', 'ws'), headers: forwarded() });

    assert.equal(outcome.status, 401);
    assert.equal(outcome.error, 'certificate_mismatch');
  });

  test('malformed header is refused', async () => {
    const outcome = await connectWithCertificate(server, { clientId: 'proxied-device', accessToken, url: plainUrl('/ws', 'ws'), headers: forwarded(':bm90IGEgY2VydGlmaWNhdGU=:') });

    assert.equal(outcome.status, 401);
    assert.equal(outcome.error, 'certificate_mismatch');
  });

  test('token request without the header gets invalid_client', async () => {
    const response = await requestCertificateToken(secretRecordingFetch(fetch), plainUrl('/oauth/token'), 'proxied-device', forwarded());

    assert.equal(response.status, 401);
    assert.equal(response.body.error, 'invalid_client');
  });
});

describe('header from an untrusted peer', () => {
  test('handshake header is ignored', async () => {
    const outcome = await connectWithCertificate(server, { clientId: 'proxied-device', accessToken, localAddress: untrustedAddress, headers: { [header]: byteSequence(device) } });

    assert.equal(outcome.status, 401);
    assert.equal(outcome.error, 'certificate_mismatch');
  });

  test('TLS certificate wins over the header', async () => {
    const outcome = await connectWithCertificate(server, { clientId: 'proxied-device', accessToken, certificate: device, localAddress: untrustedAddress, headers: { [header]: byteSequence(unrelated) } });

    assert.equal(outcome.status, 101);
    outcome.socket?.close();
  });

  test('token request header is ignored', async () => {
    const untrustedFetch = secretRecordingFetch(fetchThrough(new Agent({ localAddress: untrustedAddress, connect: { ca: server.caPem } })));

    const response = await requestCertificateToken(untrustedFetch, `${server.url}/oauth/token`, 'proxied-device', { [header]: byteSequence(device) });

    assert.equal(response.status, 401);
    assert.equal(response.body.error, 'invalid_client');
  });

  test('TLS client from the proxy address uses the header only', async () => {
    const response = await requestCertificateToken(mtlsFetch(server, device), `${server.url}/oauth/token`, 'proxied-device');

    assert.equal(response.status, 401);
    assert.equal(response.body.error, 'invalid_client');
  });
});
