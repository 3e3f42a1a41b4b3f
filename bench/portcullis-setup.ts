// Registers the benchmark's clients in a Portcullis data directory with the real CLI, and gets
// their tokens from a running server the way a device does.
import { spawn } from 'node:child_process';
import path from 'node:path';

import { fanoutChannel } from './config.ts';
import { importProofSigner, signProof, type ProofKeyPair } from './dpop.ts';
import { basicAuthorization, httpsRequest, postForm, type HttpsTarget } from './https-client.ts';
import { repositoryRoot } from './processes.ts';

/** Client id and secret of one registered device. */
export interface DeviceCredentials {
  client_id: string;
  client_secret: string;
}

/** The clients that the scenarios use. */
export interface BenchClients {
  /** Device with the default scopes, for handshakes, memory and the token endpoint. */
  device: DeviceCredentials;
  /** Publishes and subscribes on the fan-out channel. */
  fanout: DeviceCredentials;
  /** Gets its token through the device flow, so that it has a grant to revoke. */
  flow: DeviceCredentials;
  /** User who approves `flow`. */
  username: string;
}

const username = 'bench-user';

/** Runs `portcullis <args> --data-dir <dataDir>` and returns its standard output. Throws on a non-zero exit code. */
export function runPortcullisCli(dataDir: string, args: string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repositoryRoot, 'bin/portcullis.js'), ...args, '--data-dir', dataDir], {
      cwd: repositoryRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => { stdout += chunk; });
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) {
        reject(new Error(`portcullis ${args.slice(0, 2).join(' ')} exited with code ${code}: ${stderr.trim()}`));
        return;
      }
      resolve(stdout);
    });
    child.stdin.end(input);
  });
}

async function addDevice(dataDir: string, clientId: string, extraArgs: string[] = []): Promise<DeviceCredentials> {
  const output = await runPortcullisCli(dataDir, ['devices', 'add', clientId, ...extraArgs]);
  return JSON.parse(output) as DeviceCredentials;
}

/** Registers the benchmark's devices and user in an empty data directory. */
export async function registerBenchClients(dataDir: string): Promise<BenchClients> {
  const device = await addDevice(dataDir, 'bench-device');
  const fanout = await addDevice(dataDir, 'bench-fanout', ['--scope', `publish:${fanoutChannel} subscribe:${fanoutChannel}`]);
  // The password only has to pass the policy, because the benchmark never logs in as this user.
  await runPortcullisCli(dataDir, ['users', 'add', username, '--password-stdin'], 'bench password, never used\n');
  const flow = await addDevice(dataDir, 'bench-flow', ['--owner', username]);
  return { device, fanout, flow, username };
}

/** Gets a client-credentials access token. */
export async function clientCredentialsToken(target: HttpsTarget, device: DeviceCredentials): Promise<string> {
  const body = await postForm(target, '/oauth/token', { grant_type: 'client_credentials' }, basicAuthorization(device.client_id, device.client_secret));
  return String(body.access_token);
}

/**
 * Gets a client-credentials access token bound to `key` (RFC 9449), as a device does. The auth
 * server requires a nonce, so the first request gets 400 `use_dpop_nonce` with a `DPoP-Nonce`
 * header. The second carries a new proof with that nonce.
 */
export async function dpopClientCredentialsToken(target: HttpsTarget, device: DeviceCredentials, key: ProofKeyPair): Promise<string> {
  const signer = await importProofSigner(key);
  // The token endpoint compares `htu` with the URL of the request, whose host is the public URL's.
  const htu = `https://localhost:${target.port}/oauth/token`;
  const requestToken = async (nonce?: string) => {
    const response = await httpsRequest(target, 'POST', '/oauth/token', {
      authorization: basicAuthorization(device.client_id, device.client_secret),
      'content-type': 'application/x-www-form-urlencoded',
      dpop: await signProof(signer, { htm: 'POST', htu, nonce }),
    }, new URLSearchParams({ grant_type: 'client_credentials' }).toString());
    const body = JSON.parse(response.body) as { access_token?: unknown; token_type?: unknown; error?: unknown };
    return { status: response.status, nonce: response.headers['dpop-nonce'], body };
  };

  let response = await requestToken();
  if (response.body.error === 'use_dpop_nonce' && typeof response.nonce === 'string') {
    response = await requestToken(response.nonce);
  }
  const { status, body } = response;
  if (status !== 200 || typeof body.access_token !== 'string' || body.token_type !== 'DPoP') {
    throw new Error(`the DPoP token request failed with status ${status} (${String(body.error ?? body.token_type)})`);
  }
  return body.access_token;
}

/**
 * Gets an access token through the device authorization grant (RFC 8628), approved with
 * `portcullis devices approve`, and returns it with the id of the grant behind it.
 */
export async function deviceFlowToken(target: HttpsTarget, dataDir: string, clients: BenchClients): Promise<{ token: string; grantId: string }> {
  const authorization = basicAuthorization(clients.flow.client_id, clients.flow.client_secret);
  const code = await postForm(target, '/oauth/device/authorize', {}, authorization);
  await runPortcullisCli(dataDir, ['devices', 'approve', String(code.user_code), '--user', clients.username]);
  const body = await postForm(target, '/oauth/token', { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: String(code.device_code) }, authorization);

  const token = String(body.access_token);
  const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { grant_id?: string };
  if (!claims.grant_id) {
    throw new Error('the device-flow token has no grant_id claim');
  }
  return { token, grantId: claims.grant_id };
}
