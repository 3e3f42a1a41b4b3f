// Certificate-bound tokens (RFC 8705) on a server started with --tls-client-ca. Devices registered
// with a certificate get tokens over mutual TLS whose cnf.x5t#S256 is that certificate's thumbprint.
// The gateway accepts such a token only on a connection that presents the same certificate.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { decodeJwt } from 'jose';

import { createTestCa, issueDeviceCertificate, selfSignedDeviceCertificate, type CertificateFiles } from '../support/device-certificates.ts';
import { addCertificateDevice, connectWithCertificate, mtlsFetch, nextFrame, requestCertificateToken } from '../support/mtls.ts';
import { addDevice, deviceToken, startTestServer, temporaryDataDir, type TestServer } from '../support/server.ts';

let server: TestServer;
let caSigned: CertificateFiles;
let selfSigned: CertificateFiles;
let unrelated: CertificateFiles;
let otherCaSigned: CertificateFiles;
let secondCaSigned: CertificateFiles;

before(async () => {
  const directory = temporaryDataDir();
  const ca = await createTestCa(directory, 'Portcullis Test Device CA');
  const otherCa = await createTestCa(directory, 'Unrelated CA');
  caSigned = await issueDeviceCertificate(directory, ca, 'ca-device');
  selfSigned = await selfSignedDeviceCertificate(directory, 'self-device');
  unrelated = await selfSignedDeviceCertificate(directory, 'unrelated-device');
  // Same subject DN as caSigned, but from a CA the server does not trust.
  otherCaSigned = await issueDeviceCertificate(directory, otherCa, 'ca-device');
  secondCaSigned = await issueDeviceCertificate(directory, ca, 'ca-device');

  server = await startTestServer({ tlsClientCaFile: ca.certFile });
  await addCertificateDevice(server, 'ca-device', caSigned);
  await addCertificateDevice(server, 'self-device', selfSigned);
});

after(async () => {
  await server?.close();
});

function tokenEndpoint(): string {
  return `${server.url}/oauth/token`;
}

async function boundToken(clientId: string, certificate: CertificateFiles): Promise<string> {
  const response = await requestCertificateToken(mtlsFetch(server, certificate), tokenEndpoint(), clientId);
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body.access_token as string;
}

const devices = [
  { clientId: 'ca-device', method: 'tls_client_auth', certificate: () => caSigned },
  { clientId: 'self-device', method: 'self_signed_tls_client_auth', certificate: () => selfSigned },
];

for (const { clientId, method, certificate } of devices) {
  describe(`${method} device`, () => {
    test('token carries the certificate thumbprint', async () => {
      const response = await requestCertificateToken(mtlsFetch(server, certificate()), tokenEndpoint(), clientId);

      assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.equal(response.body.token_type, 'Bearer');
      const claims = decodeJwt(response.body.access_token as string);
      assert.equal(claims.client_id, clientId);
      assert.deepEqual(claims.cnf, { 'x5t#S256': certificate().thumbprint });
    });

    test('right certificate connects', async () => {
      const accessToken = await boundToken(clientId, certificate());

      const outcome = await connectWithCertificate(server, { clientId, accessToken, certificate: certificate() });

      assert.equal(outcome.status, 101);
      assert.equal(outcome.welcome?.type, 'welcome');
      assert.equal(outcome.welcome?.client_id, clientId);
      outcome.socket?.close();
    });

    test('another certificate is refused', async () => {
      const accessToken = await boundToken(clientId, certificate());

      const outcome = await connectWithCertificate(server, { clientId, accessToken, certificate: unrelated });

      assert.equal(outcome.status, 401);
      assert.equal(outcome.error, 'certificate_mismatch');
      assert.equal(outcome.welcome, null);
    });

    test('no certificate is refused', async () => {
      const accessToken = await boundToken(clientId, certificate());

      const outcome = await connectWithCertificate(server, { clientId, accessToken });

      assert.equal(outcome.status, 401);
      assert.equal(outcome.error, 'certificate_mismatch');
      assert.equal(outcome.welcome, null);
    });
  });
}

describe('token endpoint client authentication', () => {
  test('discovery lists the mutual-TLS methods', async () => {
    const response = await server.fetch(`${server.url}/.well-known/oauth-authorization-server`);
    const metadata = await response.json() as Record<string, unknown>;

    assert.equal(response.status, 200);
    assert.equal(metadata.tls_client_certificate_bound_access_tokens, true);
    assert.ok((metadata.token_endpoint_auth_methods_supported as string[]).includes('tls_client_auth'));
    assert.ok((metadata.token_endpoint_auth_methods_supported as string[]).includes('self_signed_tls_client_auth'));
    assert.equal(metadata.mtls_endpoint_aliases, undefined);
  });

  test('no certificate gets invalid_client', async () => {
    const response = await requestCertificateToken(mtlsFetch(server), tokenEndpoint(), 'ca-device');

    assert.equal(response.status, 401);
    assert.equal(response.body.error, 'invalid_client');
  });

  test('unregistered self-signed certificate gets invalid_client', async () => {
    const response = await requestCertificateToken(mtlsFetch(server, unrelated), tokenEndpoint(), 'self-device');

    assert.equal(response.status, 401);
    assert.equal(response.body.error, 'invalid_client');
  });

  test('same subject from an untrusted CA gets invalid_client', async () => {
    const response = await requestCertificateToken(mtlsFetch(server, otherCaSigned), tokenEndpoint(), 'ca-device');

    assert.equal(response.status, 401);
    assert.equal(response.body.error, 'invalid_client');
  });

  test('another device certificate gets invalid_client', async () => {
    const response = await requestCertificateToken(mtlsFetch(server, selfSigned), tokenEndpoint(), 'ca-device');

    assert.equal(response.status, 401);
    assert.equal(response.body.error, 'invalid_client');
  });
});

describe('clients without a certificate', () => {
  test('secret device connects with a plain bearer token', async () => {
    const device = await addDevice(server, 'secret-device');
    const accessToken = await deviceToken(server, device);
    assert.equal(decodeJwt(accessToken).cnf, undefined);

    const outcome = await connectWithCertificate(server, { clientId: device.client_id, accessToken });

    assert.equal(outcome.status, 101);
    assert.equal(outcome.welcome?.client_id, device.client_id);
    outcome.socket?.close();
  });

  test('unbound token passes with any certificate', async () => {
    const device = await addDevice(server, 'secret-device-2');
    const accessToken = await deviceToken(server, device);

    const outcome = await connectWithCertificate(server, { clientId: device.client_id, accessToken, certificate: unrelated });

    assert.equal(outcome.status, 101);
    outcome.socket?.close();
  });
});

describe('dpop-required device', () => {
  test('token request without a DPoP proof is refused', async () => {
    const device = await addDevice(server, 'dpop-device', ['--dpop-required']);

    const response = await server.fetch(tokenEndpoint(), {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${device.client_id}:${device.client_secret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
    });
    const body = await response.json() as Record<string, unknown>;

    assert.equal(response.status, 400);
    assert.equal(body.error, 'invalid_grant');
    assert.equal(body.access_token, undefined);
  });

  test('certificate device without a DPoP proof is refused', async () => {
    const directory = temporaryDataDir();
    const certificate = await selfSignedDeviceCertificate(directory, 'dpop-cert-device');
    await addCertificateDevice(server, 'dpop-cert-device', certificate, ['--dpop-required']);

    const response = await requestCertificateToken(mtlsFetch(server, certificate), tokenEndpoint(), 'dpop-cert-device');

    assert.equal(response.status, 400);
    assert.equal(response.body.error, 'invalid_grant');
    assert.equal(response.body.access_token, undefined);
  });
});

describe('in-band refresh', () => {
  test('new token for the same certificate is accepted', async () => {
    const outcome = await connectWithCertificate(server, { clientId: 'self-device', accessToken: await boundToken('self-device', selfSigned), certificate: selfSigned });
    assert.equal(outcome.status, 101);
    const socket = outcome.socket!;

    const replacement = await boundToken('self-device', selfSigned);
    socket.send(JSON.stringify({ type: 'auth', id: 'refresh-1', token: replacement }));
    const reply = await nextFrame(socket);

    assert.equal(reply.type, 'auth_ok');
    assert.equal(reply.expires_at, decodeJwt(replacement).exp);
    socket.close();
  });

  test('token for another certificate closes the connection', async () => {
    // tls_client_auth accepts any certificate with the registered subject from the trusted CA, so
    // the same device can hold a token bound to a second certificate.
    const outcome = await connectWithCertificate(server, { clientId: 'ca-device', accessToken: await boundToken('ca-device', caSigned), certificate: caSigned });
    assert.equal(outcome.status, 101);
    const socket = outcome.socket!;
    const closed = new Promise<{ code: number; reason: string }>((resolve) => {
      socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });

    const replacement = await boundToken('ca-device', secondCaSigned);
    assert.deepEqual(decodeJwt(replacement).cnf, { 'x5t#S256': secondCaSigned.thumbprint });
    socket.send(JSON.stringify({ type: 'auth', id: 'refresh-2', token: replacement }));

    assert.deepEqual(await closed, { code: 4403, reason: 'token_invalid' });
  });
});
