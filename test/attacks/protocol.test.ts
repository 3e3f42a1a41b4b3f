// Attacks on WebSocket framing and message size. Each case completes a real device handshake over
// TLS, then writes hand-built frame bytes, so the test controls masking, opcodes, reserved bits,
// fragmentation and announced lengths. The expected close codes are those that RFC 6455 section
// 7.4.1 defines and `ws` 8 sends: 1002 for a protocol error, 1007 for invalid UTF-8, 1008 for too many
// fragments and 1009 for a message too big.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';

import { defaultOptions } from '../../src/config/options.ts';
import {
  closeCodes, closePayload, encodeFrame, openRawSocket, opcodes, RawSocket, rsv1, rsv2, rsv3, type CloseFrame,
} from '../support/raw-websocket.ts';
import { addDevice, deviceToken, startTestServer, type TestServer } from '../support/server.ts';
import { openDeviceSocket, socketWaitMs, type DeviceCredentials } from '../support/websocket.ts';

/** The default message limit, which these attacks check without overriding it. */
const maxPayloadBytes = defaultOptions.maxPayloadBytes;

/**
 * Writes `chunks` one after another until the server's close frame arrives, and returns the number of
 * bytes written by then. Each write waits for the previous one, so the server reads between them.
 */
async function writeUntilCloseFrame(raw: RawSocket, chunks: Iterable<Buffer>): Promise<number> {
  let written = 0;
  for (const chunk of chunks) {
    if (raw.closeFrame || raw.ended) {
      break;
    }
    if (!await raw.write(chunk)) {
      break;
    }
    written += chunk.length;
  }
  return written;
}

function* repeat(chunk: Buffer, times: number): Generator<Buffer> {
  for (let index = 0; index < times; index += 1) {
    yield chunk;
  }
}

/**
 * Waits for the server's close frame, then checks that the server also closes the TCP connection
 * without waiting for the client's close frame, and returns the close frame.
 */
async function expectClose(raw: RawSocket, attack: string): Promise<CloseFrame> {
  const closeFrame = await raw.waitForCloseFrame();
  assert.equal(await raw.waitForEnd(), true, `after ${attack}, the server sent a close frame but kept the TCP connection open`);
  return closeFrame;
}

/** Opens an authenticated raw socket, writes `frame`, and returns the server's close frame. */
async function closeFrameAfter(server: TestServer, device: DeviceCredentials, frame: Buffer, attack: string): Promise<CloseFrame> {
  const { raw } = await openRawSocket(server, device);
  try {
    await raw.write(frame);
    return await expectClose(raw, attack);
  } finally {
    await raw.end();
  }
}

/** Checks that the gateway still accepts a device and has logged no internal error. */
async function assertStillServing(server: TestServer, device: DeviceCredentials, attack: string): Promise<void> {
  const socket = await openDeviceSocket(server, device);
  assert.equal(socket.welcome.type, 'welcome', `after ${attack}, a new device no longer connects`);
  await socket.close();

  // pino writes level 50 for error and 60 for fatal.
  const failures = server.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50);
  assert.deepEqual(failures, [], `${attack} caused an internal error`);
}

async function registerDevice(server: TestServer, clientId: string): Promise<DeviceCredentials> {
  return { clientId, accessToken: await deviceToken(server, await addDevice(server, clientId)) };
}

describe('message size and framing, default options', () => {
  let server: TestServer;
  let device: DeviceCredentials;

  before(async () => {
    server = await startTestServer();
    device = await registerDevice(server, 'framing-attacker');
  });

  after(async () => {
    await server.close();
  });

  test('attack 11: 10 MiB frame', async () => {
    const announced = 10 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024);
    const { raw } = await openRawSocket(server, device);

    try {
      const header = encodeFrame({ opcode: opcodes.binary, announcedLength: announced });
      const written = await writeUntilCloseFrame(raw, [header, ...repeat(chunk, announced / chunk.length)]);
      const closeFrame = await expectClose(raw, 'a 10 MiB frame');

      assert.equal(closeFrame.code, closeCodes.messageTooBig, 'a frame announcing 10 MiB was not closed with 1009');
      assert.ok(written < header.length + announced, `the server read all ${written} bytes of a 10 MiB frame before closing`);
    } finally {
      await raw.end();
    }
    await assertStillServing(server, device, 'a 10 MiB frame');
  });

  test('attack 11: fragmented message past the limit', async () => {
    const fragment = Buffer.alloc(16 * 1024);
    const fragments = 10 * 1024 * 1024 / fragment.length;
    const { raw } = await openRawSocket(server, device);

    try {
      const frames = function* () {
        yield encodeFrame({ opcode: opcodes.binary, fin: false, payload: fragment });
        for (let index = 1; index < fragments; index += 1) {
          yield encodeFrame({ opcode: opcodes.continuation, fin: index === fragments - 1, payload: fragment });
        }
      };
      const written = await writeUntilCloseFrame(raw, frames());
      const closeFrame = await expectClose(raw, 'a fragmented message past the limit');

      assert.equal(closeFrame.code, closeCodes.messageTooBig, 'a fragmented message growing past the limit was not closed with 1009');
      assert.ok(written < fragments * fragment.length, 'the server read every fragment of a 10 MiB message before closing');
    } finally {
      await raw.end();
    }
    await assertStillServing(server, device, 'a fragmented message past the limit');
  });

  test('attack 11: many tiny fragments', async () => {
    // ws caps the fragments of one message at 16384 by default (`maxFragments`), so a message of
    // one-byte fragments, each kept as a Buffer of its own, cannot pile up under the byte limit.
    const fragments = 16 * 1024 + 1;
    assert.ok(fragments < maxPayloadBytes, 'the message stays under the byte limit');
    const { raw } = await openRawSocket(server, device);

    try {
      const frames = [encodeFrame({ opcode: opcodes.binary, fin: false, payload: Buffer.from('x') })];
      for (let index = 1; index < fragments; index += 1) {
        frames.push(encodeFrame({ opcode: opcodes.continuation, fin: false, payload: Buffer.from('x') }));
      }
      await raw.write(Buffer.concat(frames));
      const closeFrame = await expectClose(raw, 'a message of many tiny fragments');

      assert.equal(closeFrame.code, closeCodes.policyViolation, 'a message of 16385 fragments was not closed with 1008');
    } finally {
      await raw.end();
    }
    await assertStillServing(server, device, 'a message of many tiny fragments');
  });

  test('attack 11: compressed frame without negotiated compression', async () => {
    const { raw, responseHeaders } = await openRawSocket(server, device, 'permessage-deflate; client_max_window_bits');

    try {
      assert.equal(responseHeaders.get('sec-websocket-extensions'), undefined, 'the server negotiated permessage-deflate although it is off by default');

      const compressed = zlib.deflateRawSync(Buffer.from('{"type":"ping"}'), { finishFlush: zlib.constants.Z_SYNC_FLUSH }).subarray(0, -4);
      await raw.write(encodeFrame({ opcode: opcodes.text, rsv: rsv1, payload: compressed }));
      const closeFrame = await expectClose(raw, 'a compressed frame without compression');

      assert.equal(closeFrame.code, closeCodes.protocolError, 'a frame with RSV1 set but no negotiated extension was not closed with 1002');
    } finally {
      await raw.end();
    }
    await assertStillServing(server, device, 'a compressed frame without compression');
  });

  test('attack 13: unmasked client frame', async () => {
    const frame = encodeFrame({ opcode: opcodes.text, masked: false, payload: Buffer.from('{"type":"ping"}') });

    const closeFrame = await closeFrameAfter(server, device, frame, 'an unmasked client frame');

    assert.equal(closeFrame.code, closeCodes.protocolError, 'an unmasked client frame was not closed with 1002');
    await assertStillServing(server, device, 'an unmasked client frame');
  });

  test('attack 13: reserved opcodes', async () => {
    const reserved = [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf];

    for (const opcode of reserved) {
      const closeFrame = await closeFrameAfter(server, device, encodeFrame({ opcode, payload: Buffer.from('x') }), `reserved opcode ${opcode}`);

      assert.equal(closeFrame.code, closeCodes.protocolError, `reserved opcode 0x${opcode.toString(16)} was not closed with 1002`);
    }
    await assertStillServing(server, device, 'reserved opcodes');
  });

  test('attack 13: reserved bits without an extension', async () => {
    for (const [name, rsv] of [['RSV2', rsv2], ['RSV3', rsv3], ['RSV2 and RSV3', rsv2 | rsv3]] as const) {
      const frame = encodeFrame({ opcode: opcodes.text, rsv, payload: Buffer.from('{"type":"ping"}') });

      const closeFrame = await closeFrameAfter(server, device, frame, `a frame with ${name} set`);

      assert.equal(closeFrame.code, closeCodes.protocolError, `a frame with ${name} set was not closed with 1002`);
    }
    await assertStillServing(server, device, 'reserved bits');
  });

  test('attack 13: invalid close codes', async () => {
    // RFC 6455 section 7.4: 1004 is reserved, and 1005, 1006 and 1015 must not appear in a close
    // frame. Codes below 1000 are unused, 1016 to 2999 are left to later revisions of the protocol,
    // and no range above 4999 is defined.
    const invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535];

    for (const code of invalid) {
      const closeFrame = await closeFrameAfter(server, device, encodeFrame({ opcode: opcodes.close, payload: closePayload(code) }), `close code ${code}`);

      assert.equal(closeFrame.code, closeCodes.protocolError, `a close frame with code ${code} was not answered with 1002`);
    }
    await assertStillServing(server, device, 'invalid close codes');
  });

  test('attack 13: close frame with a one-byte payload', async () => {
    const frame = encodeFrame({ opcode: opcodes.close, payload: Buffer.from([0x03]) });

    const closeFrame = await closeFrameAfter(server, device, frame, 'a one-byte close payload');

    assert.equal(closeFrame.code, closeCodes.protocolError, 'a close frame with a one-byte payload was not answered with 1002');
    await assertStillServing(server, device, 'a one-byte close payload');
  });

  test('attack 13: close reason not UTF-8', async () => {
    const frame = encodeFrame({ opcode: opcodes.close, payload: closePayload(1000, Buffer.from([0xc3, 0x28])) });

    const closeFrame = await closeFrameAfter(server, device, frame, 'a close reason that is not UTF-8');

    assert.equal(closeFrame.code, closeCodes.invalidPayload, 'a close reason that is not UTF-8 was not answered with 1007');
    await assertStillServing(server, device, 'a close reason that is not UTF-8');
  });

  test('attack 13: malformed control frames', async () => {
    // RFC 6455 section 5.5: control frames must not be fragmented and carry at most 125 bytes.
    const cases: Array<[string, Buffer]> = [
      ['fragmented ping', encodeFrame({ opcode: opcodes.ping, fin: false, payload: Buffer.from('x') })],
      ['126-byte ping', encodeFrame({ opcode: opcodes.ping, payload: Buffer.alloc(126) })],
      ['126-byte close', encodeFrame({ opcode: opcodes.close, payload: closePayload(1000, Buffer.alloc(124, 'x')) })],
      ['compressed ping', encodeFrame({ opcode: opcodes.ping, rsv: rsv1, payload: Buffer.from('x') })],
    ];

    for (const [name, frame] of cases) {
      const closeFrame = await closeFrameAfter(server, device, frame, `a ${name}`);

      assert.equal(closeFrame.code, closeCodes.protocolError, `a ${name} was not closed with 1002`);
    }
    await assertStillServing(server, device, 'malformed control frames');
  });

  test('attack 13: misplaced fragments', async () => {
    // RFC 6455 section 5.4: a continuation frame needs a message to continue, and a new data frame
    // must not start before the fragmented one is finished.
    const cases: Array<[string, Buffer]> = [
      ['continuation frame without a message', encodeFrame({ opcode: opcodes.continuation, payload: Buffer.from('x') })],
      ['new message inside a fragmented one', Buffer.concat([
        encodeFrame({ opcode: opcodes.text, fin: false, payload: Buffer.from('{"type":') }),
        encodeFrame({ opcode: opcodes.text, payload: Buffer.from('{"type":"ping"}') }),
      ])],
    ];

    for (const [name, frames] of cases) {
      const closeFrame = await closeFrameAfter(server, device, frames, `a ${name}`);

      assert.equal(closeFrame.code, closeCodes.protocolError, `a ${name} was not closed with 1002`);
    }
    await assertStillServing(server, device, 'misplaced fragments');
  });
});

describe('deflate bomb, permessage-deflate on', () => {
  let server: TestServer;
  let device: DeviceCredentials;

  before(async () => {
    server = await startTestServer({ perMessageDeflate: true });
    device = await registerDevice(server, 'deflate-attacker');
  });

  after(async () => {
    await server.close();
  });

  test('attack 11: deflate bomb', async () => {
    const inflated = Buffer.alloc(16 * 1024 * 1024);
    // RFC 7692 section 7.2.1: the sender flushes with a sync flush and drops its 4-byte tail.
    const compressed = zlib.deflateRawSync(inflated, { finishFlush: zlib.constants.Z_SYNC_FLUSH }).subarray(0, -4);
    assert.ok(compressed.length < maxPayloadBytes, `the compressed frame (${compressed.length} bytes) is itself under the limit`);
    const { raw, responseHeaders } = await openRawSocket(server, device, 'permessage-deflate; client_max_window_bits');

    try {
      assert.match(responseHeaders.get('sec-websocket-extensions') ?? '', /^permessage-deflate\b/, 'the server did not negotiate permessage-deflate');

      await raw.write(encodeFrame({ opcode: opcodes.binary, rsv: rsv1, payload: compressed }));
      const closeFrame = await expectClose(raw, 'a deflate bomb');

      assert.equal(closeFrame.code, closeCodes.messageTooBig, 'a frame inflating to 16 MiB was not closed with 1009');
    } finally {
      await raw.end();
    }
    await assertStillServing(server, device, 'a deflate bomb');
  });
});
