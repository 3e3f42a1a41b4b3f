import WebSocket from 'ws';

import type { ScriptedSession } from './browser-login.ts';
import type { TestServer } from './server.ts';

/**
 * Maximum wait for a handshake, a frame or a close, in milliseconds. It only stops a test that
 * would otherwise hang, and no test asserts how long anything took.
 */
export const socketWaitMs = 15_000;

/** One JSON frame sent by the gateway, such as `welcome`, `expiring` or `auth_ok`. */
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
  /** Close code and reason once the socket has closed, else null. */
  closeInfo: CloseInfo | null = null;
  private readonly unread: Frame[] = [];
  private readonly frameListeners = new Set<() => void>();
  private readonly closed: Promise<CloseInfo>;

  constructor(socket: WebSocket, welcome: WelcomeFrame) {
    this.socket = socket;
    this.welcome = welcome;
    socket.on('message', (data) => {
      this.unread.push(JSON.parse(data.toString()) as Frame);
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
    return new Promise((resolve, reject) => {
      const check = () => {
        const frame = this.unread.shift();
        if (frame) {
          finish();
          resolve(frame);
          return;
        }
        if (this.closeInfo) {
          finish();
          reject(new Error(`socket closed with ${this.closeInfo.code} ${this.closeInfo.reason} while a frame was expected`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no frame arrived within ${socketWaitMs} ms`));
      }, socketWaitMs);
      const finish = () => {
        clearTimeout(timer);
        this.frameListeners.delete(check);
      };

      this.frameListeners.add(check);
      check();
    });
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

interface OpenOptions {
  server: TestServer;
  headers: Record<string, string>;
  protocols?: string[];
}

/**
 * Opens a socket with the `ws` client over TLS, trusting only the server's development CA, and
 * resolves once the welcome frame arrives. A rejected handshake rejects with its status and error code.
 */
function openSocket(options: OpenOptions): Promise<GatewaySocket> {
  const socket = new WebSocket(`wss://localhost:${options.server.port}/ws`, options.protocols ?? [], {
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
      const welcome = JSON.parse(data.toString()) as WelcomeFrame;
      if (welcome.type !== 'welcome') {
        socket.terminate();
        reject(new Error(`the first frame was ${welcome.type}, not welcome`));
        return;
      }
      resolve(new GatewaySocket(socket, welcome));
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
