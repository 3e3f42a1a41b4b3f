// Discovery names endpoints under the public URL whatever Host or X-Forwarded-Host a request
// carries, so a forged header cannot plant another origin in a cached metadata document.
import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, test } from 'node:test';

import { startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;

before(async () => {
  // A trusted proxy makes oidc-provider read forwarded headers, the riskier setting.
  server = await startTestServer({ trustedProxies: ['127.0.0.1'] });
});

after(async () => {
  await server?.close();
});

function getWithHeaders(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = https.get({ host: '127.0.0.1', port: server.port, path, servername: 'localhost', ca: server.caPem, headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('error', reject);
  });
}

test('a forged Host or X-Forwarded-Host does not change the discovery document', async () => {
  const response = await getWithHeaders('/.well-known/oauth-authorization-server', {
    Host: 'attacker.example',
    'X-Forwarded-Host': 'forwarded.attacker.example',
    'X-Forwarded-Proto': 'http',
  });

  assert.equal(response.status, 200);
  const metadata = JSON.parse(response.body) as Record<string, unknown>;
  assert.equal(metadata.issuer, server.url);
  assert.equal(metadata.jwks_uri, `${server.url}/oauth/jwks`);
  assert.equal(metadata.token_endpoint, `${server.url}/oauth/token`);
  assert.ok(!response.body.includes('attacker'), response.body);
});
