// One client interface over the four systems, so that each scenario is written once. raw-ws,
// ws+jose and Portcullis speak JSON frames over `ws`, and socket.io uses socket.io-client.
import tls from 'node:tls';

import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';

import { signHandshakeProof } from './handshake-proofs.ts';
import type { LoadJob } from './job.ts';

/** An open connection of any system. */
export interface BenchConnection {
  /** Subscribes to `channel` and resolves when the server has confirmed it. */
  subscribe(channel: string): Promise<void>;
  publish(channel: string, data: unknown): void;
  /** Sets the one listener for the `data` of every channel message. */
  onMessage(listener: (data: unknown) => void): void;
  /** Starts a normal close from the client side. */
  close(): void;
  /** Resolves with `performance.now()` when the connection has closed, from either side. */
  readonly closed: Promise<number>;
}

const handshakeTimeoutMs = 10_000;
const replyTimeoutMs = 10_000;

/**
 * Opens one connection as the job's system expects, authenticated with the job's token. With a
 * DPoP key in the job, it signs a new proof for this handshake first.
 */
export async function connect(job: LoadJob): Promise<BenchConnection> {
  if (job.system === 'socket.io') {
    return connectSocketIo(job);
  }
  const proof = job.dpopKey ? await signHandshakeProof(job) : undefined;
  return connectWs(job, proof);
}

let sharedTlsContext: { caPem: string; context: tls.SecureContext } | null = null;

// One TLS context for every ws connection: building it parses the CA each time, which made the
// load process, not the server, the limit of the wss handshake scenario. socket.io-client offers no
// way to pass a context, so its connections still build their own.
function clientTlsContext(caPem: string): tls.SecureContext {
  if (sharedTlsContext?.caPem !== caPem) {
    sharedTlsContext = { caPem, context: tls.createSecureContext({ ca: caPem }) };
  }
  return sharedTlsContext.context;
}

function authenticationHeaders(job: LoadJob, proof: string | undefined): Record<string, string> {
  if (!job.auth) {
    return {};
  }
  if (proof === undefined) {
    return { Authorization: `Bearer ${job.auth.token}`, 'X-Client-Id': job.auth.clientId };
  }
  return { Authorization: `DPoP ${job.auth.token}`, DPoP: proof, 'X-Client-Id': job.auth.clientId };
}

function connectWs(job: LoadJob, proof: string | undefined): Promise<BenchConnection> {
  const url = `${job.plain ? 'ws' : 'wss'}://127.0.0.1:${job.port}/ws`;
  const headers = authenticationHeaders(job, proof);
  if (job.plain) {
    // A TLS-terminating proxy adds this header. Portcullis's plain listener requires it from its
    // trusted proxy, and the peers ignore it.
    headers['X-Forwarded-Proto'] = 'https';
  }
  const protocols = job.system === 'portcullis' ? ['portcullis.v1'] : [];
  // ws hands its options on to tls.connect, although its types do not list secureContext.
  const options: WebSocket.ClientOptions & tls.ConnectionOptions = { secureContext: clientTlsContext(job.caPem), headers, perMessageDeflate: false, handshakeTimeout: handshakeTimeoutMs };
  const socket = new WebSocket(url, protocols, options);
  // Portcullis sends a welcome frame once the connection is registered. The peers are ready at open.
  const waitForWelcome = job.system === 'portcullis';

  return new Promise((resolve, reject) => {
    const pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
    let nextId = 1;
    let listener: (data: unknown) => void = () => {};
    let ready = false;

    const closed = new Promise<number>((resolveClosed) => {
      socket.once('close', () => {
        const at = performance.now();
        pending.forEach((request) => request.reject(new Error('the connection closed')));
        if (!ready) {
          reject(new Error('the connection closed before it was ready'));
        }
        resolveClosed(at);
      });
    });

    const connection: BenchConnection = {
      subscribe(channel) {
        const id = nextId++;
        socket.send(JSON.stringify({ type: 'subscribe', id, channel }));
        return withTimeout(new Promise<void>((resolveReply, rejectReply) => pending.set(id, { resolve: resolveReply, reject: rejectReply })), `subscribe ${channel}`);
      },
      publish(channel, data) {
        socket.send(JSON.stringify({ type: 'publish', id: nextId++, channel, data }));
      },
      onMessage(newListener) {
        listener = newListener;
      },
      close() {
        socket.close(1000);
      },
      closed,
    };

    const becomeReady = () => {
      ready = true;
      resolve(connection);
    };

    socket.on('message', (raw) => {
      const frame = JSON.parse(raw.toString()) as { type: string; id?: number; data?: unknown; code?: string };
      if (frame.type === 'message') {
        listener(frame.data);
        return;
      }
      if (frame.type === 'welcome' && !ready) {
        becomeReady();
        return;
      }
      const request = frame.id === undefined ? undefined : pending.get(frame.id);
      if (!request) {
        return;
      }
      pending.delete(frame.id!);
      if (frame.type === 'error') {
        request.reject(new Error(`the server rejected the request with ${frame.code}`));
        return;
      }
      request.resolve();
    });
    socket.once('open', () => {
      if (!waitForWelcome) {
        becomeReady();
      }
    });
    socket.once('unexpected-response', (request, response) => {
      const code = response.headers['x-portcullis-error'];
      reject(new Error(`handshake rejected with status ${response.statusCode}${code ? ` ${code}` : ''}`));
      request.destroy();
    });
    socket.on('error', (error) => {
      if (!ready) {
        reject(error);
      }
    });
  });
}

function connectSocketIo(job: LoadJob): Promise<BenchConnection> {
  const socket: Socket = io(`${job.plain ? 'http' : 'https'}://127.0.0.1:${job.port}`, {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    timeout: handshakeTimeoutMs,
    auth: { token: job.auth?.token },
    // The same header as on the other systems' plain connections, although socket.io ignores it.
    extraHeaders: job.plain ? { 'X-Forwarded-Proto': 'https' } : undefined,
    // The server refuses permessage-deflate, so the client's default offer changes nothing.
    ca: job.caPem,
  });

  // The manager closes the engine as soon as its only socket disconnects, from either side: on a
  // close from the server that is when the DISCONNECT packet arrives.
  const closed = new Promise<number>((resolve) => socket.io.once('close', () => resolve(performance.now())));

  return new Promise((resolve, reject) => {
    const connection: BenchConnection = {
      subscribe(channel) {
        return withTimeout(new Promise<void>((resolveReply) => socket.emit('subscribe', channel, () => resolveReply())), `subscribe ${channel}`);
      },
      publish(channel, data) {
        socket.emit('publish', { channel, data });
      },
      onMessage(listener) {
        socket.off('message');
        socket.on('message', (message: { data: unknown }) => listener(message.data));
      },
      close() {
        socket.disconnect();
      },
      closed,
    };

    socket.once('connect', () => resolve(connection));
    socket.once('connect_error', (error) => {
      socket.close();
      reject(error);
    });
  });
}

function withTimeout<T>(promise: Promise<T>, description: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${description}: no reply within ${replyTimeoutMs} ms`)), replyTimeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
