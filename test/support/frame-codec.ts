// RFC 6455 framing for tests that write frames by hand: client frames built field by field, so a test
// or a fuzz input can break any field, and a reader of the server's frames that keeps every field.

/** Opcodes of RFC 6455 section 5.2. */
export const opcodes = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** One client frame, every header field explicit. */
export interface ClientFrame {
  fin: boolean;
  /** The three RSV bits as a number from 0 to 7. */
  rsv: number;
  opcode: number;
  /** Null sends the payload unmasked, which RFC 6455 section 5.3 forbids for a client. */
  maskKey: Uint8Array | null;
  payload: Uint8Array;
  /**
   * Length written in the header instead of the payload's. Only a length above the server's limit
   * is used, which the server rejects before it waits for the bytes.
   */
  announcedLength?: number;
}

/** Encodes a client frame with the shortest length form. */
export function encodeClientFrame(frame: ClientFrame): Buffer {
  const length = frame.announcedLength ?? frame.payload.length;
  const firstByte = (frame.fin ? 0x80 : 0) | ((frame.rsv & 0x7) << 4) | (frame.opcode & 0xf);
  const maskBit = frame.maskKey ? 0x80 : 0;

  let header: Buffer;
  if (length < 126) {
    header = Buffer.from([firstByte, maskBit | length]);
  } else if (length < 0x10000) {
    header = Buffer.from([firstByte, maskBit | 126, 0, 0]);
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = firstByte;
    header[1] = maskBit | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  if (!frame.maskKey) {
    return Buffer.concat([header, frame.payload]);
  }

  const key = frame.maskKey;
  const masked = Buffer.from(frame.payload.map((byte, index) => byte ^ key[index % 4]));
  return Buffer.concat([header, Buffer.from(key), masked]);
}

/** One frame the server sent. */
export interface ServerFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Splits the first complete frame off `bytes`, or returns null while it is incomplete. */
export function takeServerFrame(bytes: Buffer): { frame: ServerFrame; rest: Buffer } | null {
  if (bytes.length < 2) {
    return null;
  }

  const masked = (bytes[1] & 0x80) !== 0;
  let length = bytes[1] & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (bytes.length < 4) {
      return null;
    }
    length = bytes.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (bytes.length < 10) {
      return null;
    }
    length = Number(bytes.readBigUInt64BE(2));
    offset = 10;
  }
  offset += masked ? 4 : 0;
  if (bytes.length < offset + length) {
    return null;
  }

  const frame: ServerFrame = {
    fin: (bytes[0] & 0x80) !== 0,
    rsv: (bytes[0] >> 4) & 0x7,
    opcode: bytes[0] & 0xf,
    masked,
    payload: bytes.subarray(offset, offset + length),
  };
  return { frame, rest: bytes.subarray(offset + length) };
}

/** Code and reason of a close frame; an empty payload reads as 1005 (RFC 6455 section 7.1.5). */
export function readClose(payload: Uint8Array): { code: number; reason: string } {
  if (payload.length < 2) {
    return { code: 1005, reason: '' };
  }
  const bytes = Buffer.from(payload);
  return { code: bytes.readUInt16BE(0), reason: bytes.subarray(2).toString('utf8') };
}
