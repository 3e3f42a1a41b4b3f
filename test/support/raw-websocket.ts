// A WebSocket client written by hand for attack tests. It completes a real device handshake over TLS
// and then writes frame bytes exactly as built, so a test controls masking, opcodes, reserved bits,
// fragmentation and announced lengths. It reads the server's frames, the close frame included.
import crypto from 'node:crypto';
import tls from 'node:tls';
import zlib from 'node:zlib';

import { encodeClientFrame, opcodes, takeServerFrame, type ServerFrame } from './frame-codec.ts';
import { upgradeHeaders } from './raw-handshake.ts';
import type { TestServer } from './server.ts';
import { deviceHeaders, socketWaitMs, type DeviceCredentials } from './websocket.ts';

export { opcodes };

/** RSV bits as they stand in the first byte of a frame, for `FrameSpec.rsv`. */
export const rsv1 = 0x40;
export const rsv2 = 0x20;
export const rsv3 = 0x10;

/** Close codes from RFC 6455 section 7.4.1. */
export const closeCodes = { protocolError: 1002, invalidPayload: 1007, policyViolation: 1008, messageTooBig: 1009 } as const;

/** One client frame, described field by field so that a test can break any of them. */
export interface FrameSpec {
  opcode: number;
  payload?: Buffer;
  /** Default true. */
  fin?: boolean;
  /** RSV bits to set, e.g. `rsv1 | rsv3`. Default none. */
  rsv?: number;
  /** Default true, as RFC 6455 section 5.3 requires of every client frame. */
  masked?: boolean;
  /** Length written in the header, by default the payload's length. A larger value announces bytes that follow later. */
  announcedLength?: number;
}

/** Encodes a client frame; a masked frame gets a random key and its payload masked with it. */
export function encodeFrame(spec: FrameSpec): Buffer {
  return encodeClientFrame({
    fin: spec.fin ?? true,
    rsv: (spec.rsv ?? 0) >> 4,
    opcode: spec.opcode,
    maskKey: (spec.masked ?? true) ? crypto.randomBytes(4) : null,
    payload: spec.payload ?? Buffer.alloc(0),
    announcedLength: spec.announcedLength,
  });
}

/** Builds a close frame payload: the code, then the reason bytes. */
export function closePayload(code: number, reason: Buffer = Buffer.alloc(0)): Buffer {
  const payload = Buffer.alloc(2 + reason.length);
  payload.writeUInt16BE(code, 0);
  reason.copy(payload, 2);
  return payload;
}

/** RSV1 marks a compressed message when permessage-deflate is negotiated. */
export function isCompressed(frame: ServerFrame): boolean {
  return (frame.rsv & 0b100) !== 0;
}

/** Inflates one permessage-deflate payload, restoring the tail that RFC 7692 section 7.2.1 drops. */
export function inflateMessage(payload: Buffer): Buffer {
  const flushed = Buffer.concat([payload, Buffer.from([0x00, 0x00, 0xff, 0xff])]);
  return zlib.inflateRawSync(flushed, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
}

/** Code and reason of the server's close frame. */
export interface CloseFrame {
  code: number;
  reason: string;
}

/**
 * An accepted WebSocket on a TLS socket, read and written as raw bytes. It parses the server's frames
 * and records the close frame and the end of the TCP connection.
 */
export class RawSocket {
  readonly frames: ServerFrame[] = [];
  closeFrame: CloseFrame | null = null;
  /** True once the TCP connection has closed. */
  ended = false;
  /** Bytes after the last complete frame; any left at the end means the server sent a cut frame. */
  unparsed: Buffer;
  private readonly listeners = new Set<() => void>();

  constructor(readonly socket: tls.TLSSocket, bytesAfterResponse: Buffer) {
    this.unparsed = bytesAfterResponse;
    socket.on('data', (chunk: Buffer) => {
      this.unparsed = Buffer.concat([this.unparsed, chunk]);
      this.parse();
    });
    // A reset after the server's close frame is expected; the tests check the frames themselves.
    socket.on('error', () => {});
    socket.once('close', () => {
      this.ended = true;
      this.notify();
    });
    this.parse();
  }

  /** Writes `bytes` and resolves true once they are handed to the kernel, or false if the socket is gone. */
  write(bytes: Buffer): Promise<boolean> {
    if (this.ended || this.socket.destroyed) {
      return Promise.resolve(false);
    }
    return new Promise((resolve) => this.socket.write(bytes, (error) => resolve(!error)));
  }

  /** Resolves with the first frame that `matches`. Rejects when the connection ends first or after `socketWaitMs`. */
  waitForFrame(matches: (frame: ServerFrame) => boolean, expected: string): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const frame = this.frames.find(matches);
        if (frame) {
          finish();
          resolve(frame);
          return;
        }
        if (this.ended) {
          finish();
          reject(new Error(`the connection ended before ${expected} arrived`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${expected} did not arrive within ${socketWaitMs} ms`));
      }, socketWaitMs);
      const finish = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };

      this.listeners.add(check);
      check();
    });
  }

  /**
   * Resolves true once `done` holds, checked after every frame and at the end of the connection, or
   * false when it still does not hold after `socketWaitMs`.
   */
  waitUntil(done: () => boolean): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (done()) {
          finish(true);
        }
      };
      const finish = (result: boolean) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve(result);
      };
      const timer = setTimeout(() => finish(false), socketWaitMs);

      this.listeners.add(check);
      check();
    });
  }

  /** Resolves with the server's close frame. Rejects when the connection ends without one or after `socketWaitMs`. */
  async waitForCloseFrame(): Promise<CloseFrame> {
    await this.waitForFrame((frame) => frame.opcode === opcodes.close, 'a close frame');
    return this.closeFrame!;
  }

  /** Resolves true once the TCP connection has closed, or false if it is still open after `socketWaitMs`. */
  waitForEnd(): Promise<boolean> {
    if (this.ended) {
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), socketWaitMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Ends the TCP connection from this side and waits until it has closed. */
  async end(): Promise<void> {
    if (this.ended) {
      return;
    }
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
    this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), socketWaitMs);
    await closed;
    clearTimeout(timer);
  }

  private parse(): void {
    for (let taken = takeServerFrame(this.unparsed); taken; taken = takeServerFrame(this.unparsed)) {
      this.unparsed = taken.rest;
      this.frames.push(taken.frame);
      if (taken.frame.opcode === opcodes.close && !this.closeFrame) {
        const { payload } = taken.frame;
        this.closeFrame = payload.length >= 2
          ? { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString('utf8') }
          : { code: 1005, reason: '' };
      }
    }
    this.notify();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) {
      listener();
    }
  }
}

/** An accepted raw socket with the header section of its 101 response. */
export interface RawConnection {
  raw: RawSocket;
  /** Header lines of the 101 response, names in lower case. */
  responseHeaders: Map<string, string>;
}

/**
 * Performs the device handshake by hand over TLS, optionally offering `extensions`, and resolves once
 * the welcome frame has arrived. Rejects with the status line when the upgrade is not accepted.
 */
export function openRawSocket(server: TestServer, device: DeviceCredentials, extensions?: string): Promise<RawConnection> {
  const headers: Record<string, string> = { ...upgradeHeaders(server.port), ...deviceHeaders(device) };
  if (extensions !== undefined) {
    headers['Sec-WebSocket-Extensions'] = extensions;
  }
  const request = ['GET /ws HTTP/1.1', ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`), '', ''].join('\r\n');

  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: server.caPem });
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error(`no 101 response within ${socketWaitMs} ms`)), socketWaitMs);
    const fail = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };

    socket.once('secureConnect', () => socket.write(request));
    socket.once('error', fail);
    socket.on('data', function readResponse(chunk: Buffer) {
      received = Buffer.concat([received, chunk]);
      const headerEnd = received.indexOf('\r\n\r\n');
      if (headerEnd === -1) {
        return;
      }

      socket.off('data', readResponse);
      socket.off('error', fail);
      clearTimeout(timer);
      const [statusLine, ...lines] = received.subarray(0, headerEnd).toString('latin1').split('\r\n');
      if (!statusLine.startsWith('HTTP/1.1 101 ')) {
        fail(new Error(`handshake rejected: ${statusLine}`));
        return;
      }

      const responseHeaders = new Map(lines.map((line) => {
        const colon = line.indexOf(':');
        return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as [string, string];
      }));
      const raw = new RawSocket(socket, received.subarray(headerEnd + 4));
      raw.waitForFrame((frame) => frame.opcode === opcodes.text, 'the welcome frame').then((first) => {
        let type: unknown;
        try {
          // The welcome frame is the first message, so it inflates without an earlier compression context.
          const text = isCompressed(first) ? inflateMessage(first.payload) : first.payload;
          type = (JSON.parse(text.toString('utf8')) as { type?: unknown }).type;
        } catch (error) {
          fail(error as Error);
          return;
        }
        if (type !== 'welcome') {
          fail(new Error(`the first frame was ${String(type)}, not welcome`));
          return;
        }
        resolve({ raw, responseHeaders });
      }, fail);
    });
  });
}
