// The device SDK with certificate credentials (RFC 8705): it authenticates to the token endpoint with
// its client certificate, presents the same certificate on the WebSocket, and its certificate-bound
// token works only there.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, test } from 'node:test';

import { decodeJwt } from 'jose';

import { DeviceClient } from '../../src/client/device.ts';
import { TokenSource } from '../../src/client/token-source.ts';
import { certificateThumbprint } from '../../src/gateway/client-certificate.ts';
import { rememberSecret } from '../support/capture.ts';
import { createTestCa, issueDeviceCertificate, type CertificateFiles } from '../support/device-certificates.ts';
import { addCertificateDevice, connectWithCertificate } from '../support/mtls.ts';
import { startTestServer, temporaryDataDir, type TestServer } from '../support/server.ts';
import { clientOptions, opened, Recorder, stopped } from '../client/recorder.ts';

const clientId = 'sdk-meter';

let server: TestServer;
let certificate: CertificateFiles;

before(async () => {
  const directory = temporaryDataDir();
  const ca = await createTestCa(directory, 'SDK Test Device CA');
  certificate = await issueDeviceCertificate(directory, ca, clientId);
  server = await startTestServer({ tlsClientCaFile: ca.certFile });
  await addCertificateDevice(server, clientId, certificate);
});

after(async () => {
  await server?.close();
});

function credentials() {
  return { certificate: { cert: certificate.certPem, key: certificate.keyPem } };
}

test('sdk token is bound to its certificate', async () => {
  const tokens = new TokenSource({ issuer: server.url, clientId, credentials: credentials(), ca: server.caPem });
  try {
    const token = await tokens.fetch();
    rememberSecret(token.value);

    const expected = certificateThumbprint(new X509Certificate(certificate.certPem));
    assert.deepEqual(decodeJwt(token.value).cnf, { 'x5t#S256': expected });
    assert.equal(token.type, 'Bearer');
  } finally {
    await tokens.close();
  }
});

test('sdk connects with its certificate', async () => {
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, clientId, recorder, { credentials: credentials() }));
  try {
    client.connect();
    await opened(recorder);

    assert.deepEqual(recorder.states, ['connecting', 'open']);
  } finally {
    await client.close();
  }
});

test('sdk token without the certificate is refused', async () => {
  const tokens = new TokenSource({ issuer: server.url, clientId, credentials: credentials(), ca: server.caPem });
  try {
    const token = await tokens.fetch();
    rememberSecret(token.value);

    const outcome = await connectWithCertificate(server, { clientId, accessToken: token.value });

    assert.equal(outcome.status, 401);
    assert.equal(outcome.error, 'certificate_mismatch');
  } finally {
    await tokens.close();
  }
});

test('sdk without its certificate stops', async () => {
  const recorder = new Recorder();
  const client = new DeviceClient(clientOptions(server, clientId, recorder, { credentials: { none: true } }));
  try {
    client.connect();
    await stopped(recorder);

    assert.equal(recorder.last?.reason, 'invalid_client');
  } finally {
    await client.close();
  }
});
