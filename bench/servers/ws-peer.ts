// The raw-ws and ws+jose peers: a `ws` server with a minimal channel protocol. Without a public key
// it does not authenticate (raw-ws, the ceiling). With one it verifies an ES256 token in the upgrade
// handler, before the WebSocket exists (ws+jose): a bearer token, or a DPoP-bound token with its proof.
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

import { WebSocketServer, type RawData, type WebSocket } from 'ws';

import { handshakeHtu } from '../dpop.ts';
import { createProofVerifier } from './peer-dpop.ts';
import { controlRoutes, createPeerServer, createTokenVerifier, heartbeatIntervalMs, listenAndReport, maxPayloadBytes, readPeerSettings } from './peer.ts';

const settings = readPeerSettings();
const verifyToken = settings.publicJwk ? await createTokenVerifier(settings.publicJwk) : null;

const channels = new Map<string, Set<WebSocket>>();
const connectionsBySubject = new Map<string, Set<WebSocket>>();
const alive = new WeakSet<WebSocket>();

const wss = new WebSocketServer({ noServer: true, maxPayload: maxPayloadBytes, perMessageDeflate: false });
const server = createPeerServer(settings, controlRoutes(revoke));
const verifyProof = createProofVerifier(() => handshakeHtu((server.address() as AddressInfo).port));

// Without authentication there is no subject, so the raw-ws peer's revocation closes every connection:
// the floor for closing that many sockets on one request.
function revoke(subject: string | null): number {
  const targets = verifyToken ? connectionsBySubject.get(subject ?? '') ?? new Set() : wss.clients;
  const closing = [...targets];
  closing.forEach((socket) => socket.close(4403, 'token_revoked'));
  return closing.length;
}

function reject(socket: Duplex, status: number, reason: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

// A DPoP-bound token must come with the DPoP scheme and its proof, and a token under the DPoP scheme
// must be bound (RFC 9449 section 7.1), as on Portcullis. So a bound token sent as bearer is rejected.
async function authenticate(request: IncomingMessage): Promise<string | null> {
  const match = /^(Bearer|DPoP) +(\S+)$/i.exec(request.headers.authorization ?? '');
  if (!verifyToken || !match) {
    return null;
  }

  try {
    const [, scheme, token] = match;
    const payload = await verifyToken(token);
    if (payload.client_id !== request.headers['x-client-id']) {
      return null;
    }
    const jkt = (payload.cnf as { jkt?: unknown } | undefined)?.jkt;
    if (scheme.toLowerCase() === 'bearer') {
      return jkt === undefined ? payload.sub ?? null : null;
    }
    if (typeof jkt !== 'string' || !await verifyProof(request.headersDistinct.dpop ?? [], token, jkt)) {
      return null;
    }
    return payload.sub ?? null;
  } catch {
    return null;
  }
}

server.on('upgrade', async (request: IncomingMessage, socket: Duplex, head: Buffer) => {
  socket.on('error', () => socket.destroy());
  const subject = verifyToken ? await authenticate(request) : '';
  if (subject === null) {
    reject(socket, 401, 'Unauthorized');
    return;
  }

  wss.handleUpgrade(request, socket, head, (ws) => serve(ws, subject));
});

function serve(ws: WebSocket, subject: string): void {
  alive.add(ws);
  const ownSockets = connectionsBySubject.get(subject) ?? new Set<WebSocket>();
  connectionsBySubject.set(subject, ownSockets.add(ws));
  const subscriptions = new Set<string>();

  ws.on('pong', () => alive.add(ws));
  ws.on('error', () => ws.terminate());
  ws.on('message', (raw: RawData, isBinary: boolean) => handleFrame(ws, subscriptions, raw, isBinary));
  ws.on('close', () => {
    ownSockets.delete(ws);
    subscriptions.forEach((channel) => channels.get(channel)?.delete(ws));
  });
}

function handleFrame(ws: WebSocket, subscriptions: Set<string>, raw: RawData, isBinary: boolean): void {
  if (isBinary) {
    return;
  }

  let frame: { type?: unknown; id?: unknown; channel?: unknown; data?: unknown };
  try {
    frame = JSON.parse(raw.toString());
  } catch {
    return;
  }
  if (typeof frame.channel !== 'string') {
    return;
  }

  if (frame.type === 'subscribe') {
    subscriptions.add(frame.channel);
    const members = channels.get(frame.channel) ?? new Set<WebSocket>();
    channels.set(frame.channel, members.add(ws));
    ws.send(JSON.stringify({ type: 'subscribed', id: frame.id, channel: frame.channel }));
    return;
  }
  if (frame.type === 'publish') {
    // Serialised once, then queued on every subscriber, as Portcullis's broker does.
    const message = JSON.stringify({ type: 'message', channel: frame.channel, data: frame.data });
    channels.get(frame.channel)?.forEach((member) => member.send(message));
  }
}

const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!alive.has(ws)) {
      ws.terminate();
      continue;
    }
    alive.delete(ws);
    ws.ping();
  }
}, heartbeatIntervalMs);

await listenAndReport(server, settings, () => {
  clearInterval(heartbeat);
  wss.clients.forEach((ws) => ws.terminate());
  server.close();
});
