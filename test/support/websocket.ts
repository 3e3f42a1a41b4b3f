import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import WebSocket from 'ws';

import type { ScriptedSession } from './browser-login.ts';
import type { TestServer } from './server.ts';

/**
 * Maximum wait for a handshake, a frame or a close, in milliseconds. It only stops a test that
 * would otherwise hang, and no test asserts how long anything took.
 */
export const socketWaitMs = 15_000;

/** One JSON frame sent by the gateway, such as `welcome`, `expiring`, `auth_ok`, `message` or `error`. */
export interface Frame {
  type: string;
  [field: string]: unknown;
}

/** The first frame of every accepted connection. */
export interface WelcomeFrame extends Frame {
  type: 'welcome';
  connection_id: string;
  sub: string;
  client_id: string;
  /** Epoch seconds at which the connection's token expires. */
  expires_at: number;
  /** The token's space-separated `scope` claim, which decides the channels the socket may use. */
  scope: string;
}

/** Close code and reason of a closed socket. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/** Credentials of a device connection: its client id and an access token. */
export interface DeviceCredentials {
  clientId: string;
  accessToken: string;
}

/** Builds the handshake headers of a device: `Authorization: Bearer` and `X-Client-Id`. */
export function deviceHeaders(device: DeviceCredentials): Record<string, string> {
  return { Authorization: `Bearer ${device.accessToken}`, 'X-Client-Id': device.clientId };
}

/** Builds the handshake headers of a browser: the session cookie, the page origin and the CSRF subprotocol. */
export function browserHeaders(server: TestServer, session: ScriptedSession): Record<string, string> {
  return {
    Cookie: session.cookieHeader,
    Origin: server.url,
    'Sec-WebSocket-Protocol': `portcullis.v1, portcullis.csrf.${session.csrfToken}`,
  };
}

/**
 * An open WebSocket to the gateway, with the welcome frame already read. Later text frames are
 * queued in arrival order and read with `nextFrame`.
 */
export class GatewaySocket {
  readonly socket: WebSocket;
  readonly welcome: WelcomeFrame;
  /**
   * Text of every frame received as it arrived, the welcome frame first. Reading a frame does not
   * remove it from this list, so a test can search everything the gateway sent.
   */
  readonly received: string[] = [];
  /** Close code and reason once the socket has closed, else null. */
  closeInfo: CloseInfo | null = null;
  private readonly unread: Frame[] = [];
  private readonly frameListeners = new Set<() => void>();
  private readonly closed: Promise<CloseInfo>;

  /** `welcomeText` is the welcome frame as received. Without it, `received` starts with the frame serialised again. */
  constructor(socket: WebSocket, welcome: WelcomeFrame, welcomeText: string = JSON.stringify(welcome)) {
    this.socket = socket;
    this.welcome = welcome;
    this.received.push(welcomeText);
    socket.on('message', (data) => {
      const text = data.toString();
      this.received.push(text);
      this.unread.push(JSON.parse(text) as Frame);
      this.notify();
    });
    // The close event follows any error and carries what the tests check, so errors are not rethrown.
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => {
      socket.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.notify();
        resolve(this.closeInfo);
      });
    });
  }

  /** Tells whether the socket is open and has seen no close. */
  get isOpen(): boolean {
    return this.closeInfo === null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Frames received and not yet read with `nextFrame`, oldest first. */
  get unreadFrames(): Frame[] {
    return [...this.unread];
  }

  /** Sends one JSON text frame. */
  send(frame: Record<string, unknown>): void {
    this.socket.send(JSON.stringify(frame));
  }

  /**
   * Returns the next unread frame. Rejects when the socket closes first or no frame arrives within
   * `socketWaitMs`, naming the close code so a failed test shows why.
   */
  nextFrame(): Promise<Frame> {
    return this.nextFrameWhere(() => true, 'a frame');
  }

  /**
   * Returns the oldest unread frame for which `matches` is true, and leaves the frames before it
   * unread. Rejects when the socket closes first or no such frame arrives within `socketWaitMs`,
   * with an error that names `expected` and the close code.
   */
  nextFrameWhere(matches: (frame: Frame) => boolean, expected: string): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const index = this.unread.findIndex(matches);
        if (index >= 0) {
          const [frame] = this.unread.splice(index, 1);
          finish();
          resolve(frame);
          return;
        }
        if (this.closeInfo) {
          finish();
          reject(new Error(`socket closed with ${this.closeInfo.code} ${this.closeInfo.reason} while ${expected} was expected`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${expected} did not arrive within ${socketWaitMs} ms`));
      }, socketWaitMs);
      const finish = () => {
        clearTimeout(timer);
        this.frameListeners.delete(check);
      };

      this.frameListeners.add(check);
      check();
    });
  }

  /**
   * Sends `frame` with a fresh random `id` and returns the reply that echoes the id: `subscribed`,
   * `unsubscribed`, `published`, `auth_ok` or `error`. Frames that arrive in the meantime, such as
   * `message`, stay unread. The gateway sends the frames of one socket in order, so a close it
   * sent before the reply rejects this instead. Rejects after `socketWaitMs`.
   */
  request(frame: Record<string, unknown>): Promise<Frame> {
    const id = crypto.randomUUID();
    this.send({ ...frame, id });
    return this.nextFrameWhere((reply) => reply.id === id, `the reply to ${String(frame.type)} ${id}`);
  }

  /** Waits for the socket to close and returns its code and reason. Rejects after `socketWaitMs`. */
  waitForClose(): Promise<CloseInfo> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`socket still open after ${socketWaitMs} ms`)), socketWaitMs);
    });
    return Promise.race([this.closed, timeout]).finally(() => clearTimeout(timer));
  }

  /** Closes the socket from the client side and waits for the close to finish. */
  async close(): Promise<void> {
    if (this.closeInfo) {
      return;
    }
    this.socket.close(1000);
    await this.waitForClose().catch(() => this.socket.terminate());
  }

  private notify(): void {
    for (const listener of [...this.frameListeners]) {
      listener();
    }
  }
}

/** Options of {@link openSocket}. */
export interface OpenOptions {
  server: TestServer;
  headers: Record<string, string>;
  protocols?: string[];
  /** Address to connect to; default `wss://localhost:<server port>/ws`. */
  url?: string;
}

/**
 * Opens a socket with the `ws` client, over TLS unless `url` starts with `ws://`, trusting only the
 * server's development CA, and resolves once the welcome frame arrives. A rejected handshake rejects
 * with its status and error code.
 */
export function openSocket(options: OpenOptions): Promise<GatewaySocket> {
  const socket = new WebSocket(options.url ?? `wss://localhost:${options.server.port}/ws`, options.protocols ?? [], {
    ca: options.server.caPem,
    headers: options.headers,
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
      reject(new Error(`handshake rejected with ${response.statusCode} ${String(response.headers['x-portcullis-error'] ?? '')}`));
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('close', (code, reason) => {
      clearTimeout(timer);
      reject(new Error(`socket closed with ${code} ${reason.toString()} before the welcome frame`));
    });
    socket.once('message', (data) => {
      clearTimeout(timer);
      const text = data.toString();
      const welcome = JSON.parse(text) as WelcomeFrame;
      if (welcome.type !== 'welcome') {
        socket.terminate();
        reject(new Error(`the first frame was ${welcome.type}, not welcome`));
        return;
      }
      resolve(new GatewaySocket(socket, welcome, text));
    });
  });
}

/** Opens a device connection with a bearer token and `X-Client-Id`. */
export function openDeviceSocket(server: TestServer, device: DeviceCredentials): Promise<GatewaySocket> {
  return openSocket({ server, headers: deviceHeaders(device) });
}

/** Opens a browser connection with the session cookie, `Origin` = the server's URL and the CSRF subprotocol. */
export function openBrowserSocket(server: TestServer, session: ScriptedSession): Promise<GatewaySocket> {
  return openSocket({
    server,
    headers: { Cookie: session.cookieHeader, Origin: server.url },
    protocols: ['portcullis.v1', `portcullis.csrf.${session.csrfToken}`],
  });
}

/** Returns the channel that the default device scopes let a device both subscribe and publish to. */
export function commandsChannel(clientId: string): string {
  return `devices/${clientId}/commands`;
}

/**
 * Subscribes a device socket to its own commands channel, publishes `data` there and returns the
 * `message` frame that brings it back, which shows that the socket carries data both ways. The
 * default device scopes allow both steps, so an `error` reply fails an assertion that shows it.
 */
export async function deviceRoundTrip(socket: GatewaySocket, data: unknown): Promise<Frame> {
  const channel = commandsChannel(socket.welcome.client_id);

  const subscribed = await socket.request({ type: 'subscribe', channel });
  assert.deepEqual(subscribed, { type: 'subscribed', id: subscribed.id, channel });

  const published = await socket.request({ type: 'publish', channel, data });
  assert.deepEqual(published, { type: 'published', id: published.id, channel });

  return socket.nextFrameWhere((frame) => frame.type === 'message' && frame.channel === channel, `a message on ${channel}`);
}

const welcomeWaitMs = 10_000;

/** Outcome of one WebSocket connection attempt: the welcome frame, or the status of the rejection. */
export interface SocketOutcome {
  status: number;
  welcome: { type?: string; sub?: string; client_id?: string } | null;
  error: string | null;
}

/** Connects as a device with `ws`, trusting only `caPem`, and reads the first frame. */
export function probeDeviceConnection(port: number, caPem: string, clientId: string, accessToken: string): Promise<SocketOutcome> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`wss://localhost:${port}/ws`, {
      ca: caPem,
      headers: { Authorization: `Bearer ${accessToken}`, 'X-Client-Id': clientId },
      handshakeTimeout: welcomeWaitMs,
    });
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no welcome frame within ${welcomeWaitMs} ms`));
    }, welcomeWaitMs);

    socket.once('unexpected-response', (_request, response) => {
      clearTimeout(timer);
      response.resume();
      socket.terminate();
      resolve({ status: response.statusCode ?? 0, welcome: null, error: String(response.headers['x-portcullis-error'] ?? '') });
    });
    socket.once('message', (data) => {
      clearTimeout(timer);
      socket.close();
      resolve({ status: 101, welcome: JSON.parse(data.toString()), error: null });
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
