/**
 * A `message` frame on its way to many subscribers: its UTF-8 text, and the same text as one
 * complete WebSocket frame as a server sends it, built once for all of them.
 */
export class BroadcastFrame {
  private framed: Buffer | null = null;

  constructor(readonly payload: Buffer) {}

  /**
   * The unmasked, final text frame of RFC 6455 section 5.2: header and payload in one buffer, so
   * that each socket gets a single write instead of framing the payload again.
   */
  get wire(): Buffer {
    this.framed ??= frameText(this.payload);
    return this.framed;
  }
}

// Opcode 0x1 (text) with the FIN bit set.
const finalTextFrame = 0x81;

function frameText(payload: Buffer): Buffer {
  const length = payload.length;
  let header: Buffer;
  if (length < 126) {
    header = Buffer.from([finalTextFrame, length]);
  } else if (length < 65_536) {
    header = Buffer.alloc(4);
    header[0] = finalTextFrame;
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = finalTextFrame;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  return Buffer.concat([header, payload]);
}
