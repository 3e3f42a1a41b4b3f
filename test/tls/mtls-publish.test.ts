// A certificate-bound token (RFC 8705) at POST /api/publish: accepted with the certificate it is
// bound to, and refused with another certificate or none, as on the WebSocket handshake.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { createTestCa, selfSignedDeviceCertificate, type CertificateFiles } from '../support/device-certificates.ts';
import { addCertificateDevice, mtlsFetch, requestCertificateToken } from '../support/mtls.ts';
import { startTestServer, temporaryDataDir, type TestServer } from '../support/server.ts';

const clientId = 'publishing-meter';

let server: TestServer;
let certificate: CertificateFiles;
let otherCertificate: CertificateFiles;
let accessToken: string;

before(async () => {
  const directory = temporaryDataDir();
  const ca = await createTestCa(directory, 'Publish Test CA');
  certificate = await selfSignedDeviceCertificate(directory, clientId);
  otherCertificate = await selfSignedDeviceCertificate(directory, 'another-meter');

  server = await startTestServer({ tlsClientCaFile: ca.certFile });
  await addCertificateDevice(server, clientId, certificate);
  const response = await requestCertificateToken(mtlsFetch(server, certificate), `${server.url}/oauth/token`, clientId);
  assert.equal(response.status, 200, JSON.stringify(response.body));
  accessToken = response.body.access_token as string;
});

after(async () => {
  await server?.close();
});

async function publishWith(presented: CertificateFiles | undefined): Promise<{ status: number; error: unknown }> {
  const response = await mtlsFetch(server, presented)(`${server.url}/api/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel: `devices/${clientId}/telemetry`, data: { watts: 42 } }),
  });
  const body = await response.json() as Record<string, unknown>;
  return { status: response.status, error: body.error };
}

test('publish with the bound certificate', async () => {
  const response = await publishWith(certificate);

  assert.equal(response.status, 202);
});

test('publish with another certificate is refused', async () => {
  const response = await publishWith(otherCertificate);

  assert.equal(response.status, 401);
  assert.equal(response.error, 'certificate_mismatch');
});

test('publish without a certificate is refused', async () => {
  const response = await publishWith(undefined);

  assert.equal(response.status, 401);
  assert.equal(response.error, 'certificate_mismatch');
});
