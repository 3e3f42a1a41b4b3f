// Clients of the mutual-TLS tests: token requests and WebSocket handshakes that present a client
// certificate, or none, and return the server's response.
import { Agent } from 'undici';
import WebSocket from 'ws';

import { rememberSecret, secretRecordingFetch } from './capture.ts';
import type { CertificateFiles } from './device-certificates.ts';
import { fetchThrough } from './oauth-flows.ts';
import { runServerCli, type TestServer } from './server.ts';
import { socketWaitMs, type WelcomeFrame } from './websocket.ts';

/** Status and JSON body of a token endpoint response. */
export interface TokenResponse {
  status: number;
  body: Record<string, unknown>;
}

/** Creates a `fetch` that trusts the server's CA and presents `certificate` in the TLS handshake, or none. */
export function mtlsFetch(server: TestServer, certificate?: CertificateFiles): typeof fetch {
  const connect = certificate ? { ca: server.caPem, cert: certificate.certPem, key: certificate.keyPem } : { ca: server.caPem };
  return secretRecordingFetch(fetchThrough(new Agent({ connect })));
}

/**
 * Requests a `client_credentials` token as a client that authenticates with its certificate
 * (`client_id` in the body, no secret), at `url` (default: the server's token endpoint).
 */
export async function requestCertificateToken(fetchFn: typeof fetch, url: string, clientId: string, headers: Record<string, string> = {}): Promise<TokenResponse> {
  const response = await fetchFn(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId }).toString(),
  });
  const body = await response.json() as Record<string, unknown>;
  rememberSecret(typeof body.access_token === 'string' ? body.access_token : null);
  return { status: response.status, body };
}

/** Registers a device with `devices add <id> --certificate FILE` through the CLI and returns its JSON output. */
export async function addCertificateDevice(server: TestServer, clientId: string, certificate: CertificateFiles, extraArgs: string[] = []): Promise<Record<string, unknown>> {
  const caArgs = server.options.tlsClientCaFile ? ['--tls-client-ca', server.options.tlsClientCaFile] : [];
  const result = await runServerCli(server, ['devices', 'add', clientId, '--certificate', certificate.certFile, ...caArgs, ...extraArgs]);
  if (result.code !== 0) {
    throw new Error(`devices add failed: ${result.stderr}`);
  }
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

/** A device handshake to try: the token, the certificate to present, and where to connect from. */
export interface CertificateHandshake {
  clientId: string;
  accessToken: string;
  certificate?: CertificateFiles;
  /** Default `wss://localhost:<port>/ws`. */
  url?: string;
  headers?: Record<string, string>;
  /** Source address of the TCP connection, such as `127.0.0.2`. */
  localAddress?: string;
}

/** Outcome of a handshake: 101 with the welcome frame and the open socket, or the rejection's status and code. */
export interface HandshakeOutcome {
  status: number;
  error: string | null;
  welcome: WelcomeFrame | null;
  socket: WebSocket | null;
}

/** Opens a device WebSocket, presenting the client certificate if one is given, and reads the first frame. */
export function connectWithCertificate(server: TestServer, handshake: CertificateHandshake): Promise<HandshakeOutcome> {
  const tls = handshake.certificate ? { cert: handshake.certificate.certPem, key: handshake.certificate.keyPem } : {};
  const socket = new WebSocket(handshake.url ?? `wss://localhost:${server.port}/ws`, {
    ca: server.caPem,
    ...tls,
    localAddress: handshake.localAddress,
    headers: { Authorization: `Bearer ${handshake.accessToken}`, 'X-Client-Id': handshake.clientId, ...handshake.headers },
    handshakeTimeout: socketWaitMs,
  });

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no welcome frame within ${socketWaitMs} ms`));
    }, socketWaitMs);

    socket.once('unexpected-response', (_request, response) => {
      clearTimeout(timer);
      response.resume();
      socket.terminate();
      resolve({ status: response.statusCode ?? 0, error: String(response.headers['x-portcullis-error'] ?? ''), welcome: null, socket: null });
    });
    socket.once('message', (data) => {
      clearTimeout(timer);
      resolve({ status: 101, error: null, welcome: JSON.parse(data.toString()) as WelcomeFrame, socket });
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** Reads the next JSON frame of an open socket. */
export function nextFrame(socket: WebSocket): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no frame within ${socketWaitMs} ms`)), socketWaitMs);
    socket.once('message', (data) => {
      clearTimeout(timer);
      resolve(JSON.parse(data.toString()) as Record<string, unknown>);
    });
  });
}
