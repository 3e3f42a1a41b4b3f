// Frame properties: arbitrary frame sequences on an authenticated device connection over real TLS,
// and the protocol parser in process on any text.
import assert from 'node:assert/strict';

import fc from 'fast-check';

import { parseClientFrame } from '../../../src/channels/protocol.ts';
import { documentedFrameErrorCodes } from './documented-outcomes.ts';
import { completedMessages, firstClientClose, frameScriptArbitrary, scriptFrames, type FrameContext, type FrameScript } from './frame-arbitraries.ts';
import { encodeClientFrame, opcodes, readClose, type ClientFrame } from '../../support/frame-codec.ts';
import { openRawSocket, type RawSocket } from '../../support/raw-websocket.ts';
import { readServerFrames, type ConnectionReading } from './frame-oracle.ts';
import { errorLogLines, type FuzzTarget } from './fuzz-target.ts';
import { assertServerServes, type PropertyContext } from './handshake-properties.ts';
import { changedTables, snapshotStore } from './store-snapshot.ts';

const sentinelPayload = new Uint8Array(Buffer.from('fuzz-sentinel'));
const fixedMaskKey = new Uint8Array([1, 2, 3, 4]);

/** Returns the device identity and the tokens that `auth` frames may carry. */
export function frameContext(target: FuzzTarget): FrameContext {
  const { device, otherDevice, removedDevice, browser, server } = target;
  return {
    clientId: device.clientId,
    tokens: { genuine: device.accessToken, foreign: [otherDevice.accessToken, removedDevice.accessToken, target.expiredToken, browser.sessionToken], issuer: server.url },
  };
}

function control(opcode: number, payload: Uint8Array): Buffer {
  const frame: ClientFrame = { fin: true, rsv: 0, opcode, maskKey: fixedMaskKey, payload };
  return encodeClientFrame(frame);
}

function writeChunks(bytes: Buffer, cuts: number[]): Buffer[] {
  const offsets = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].filter((offset) => offset > 0).sort((left, right) => left - right);
  const edges = [0, ...offsets, bytes.length];
  return edges.slice(1).map((end, index) => bytes.subarray(edges[index], end));
}

function hasSentinelPong(connection: RawSocket): boolean {
  return connection.frames.some((frame) => frame.opcode === opcodes.pong && Buffer.from(frame.payload).equals(Buffer.from(sentinelPayload)));
}

function hasClose(connection: RawSocket): boolean {
  return connection.frames.some((frame) => frame.opcode === opcodes.close);
}

/**
 * Sends the script, then a ping, and waits until the server replies with a pong, closes, or drops the
 * connection. On an open connection it then waits for one reply per completed message and closes
 * with 1000; after a close from the server it sends a close frame back, as a client must. Returns
 * the reading of every frame the server sent.
 */
async function play(connection: RawSocket, script: FrameScript): Promise<ConnectionReading & { settled: boolean }> {
  const frames = scriptFrames(script);
  for (const chunk of writeChunks(Buffer.concat(frames.map(encodeClientFrame)), script.writeCuts)) {
    await connection.write(chunk);
  }
  await connection.write(control(opcodes.ping, sentinelPayload));
  const settled = await connection.waitUntil(() => connection.ended || hasClose(connection) || hasSentinelPong(connection));

  const clientClose = firstClientClose(frames);
  if (settled && !hasClose(connection) && !connection.ended) {
    const expected = completedMessages(frames);
    await connection.waitUntil(() => connection.ended || hasClose(connection) || readServerFrames(connection.frames, clientClose).replies >= expected);
  }
  const reading = readServerFrames(connection.frames, clientClose);

  if (!hasClose(connection) && !connection.ended) {
    await connection.write(control(opcodes.close, new Uint8Array([0x03, 0xe8])));
  } else if (hasClose(connection) && clientClose === null) {
    await connection.write(control(opcodes.close, new Uint8Array()));
  }
  const ended = await connection.waitUntil(() => connection.ended);
  return { ...reading, settled: settled && ended };
}

function outcomeLabel(reading: ConnectionReading, clientClose: Uint8Array | null): string {
  if (reading.close === null) {
    return 'open';
  }
  const { code, reason } = reading.close;
  if (clientClose !== null && readClose(clientClose).code === code) {
    return 'close echoed';
  }
  return `close ${code}${reason === '' ? '' : ` ${reason}`}`;
}

/**
 * Any frame sequence on an authenticated device connection ends in a documented close, or leaves
 * the connection open with exactly one documented reply per completed message. The server responds,
 * ends the TCP connection after the closing handshake, changes no stored row, logs no internal error
 * and still accepts a fresh device.
 */
export function frameOutcomeProperty(context: PropertyContext): fc.IAsyncPropertyWithHooks<[FrameScript]> {
  const { target } = context;
  return fc.asyncProperty(frameScriptArbitrary(frameContext(target)), async (script) => {
    const { server } = target;
    const logStart = server.logs.length;
    const before = await snapshotStore(server.running.store);

    const { raw: connection } = await openRawSocket(server, target.device);
    let reading: Awaited<ReturnType<typeof play>>;
    try {
      reading = await play(connection, script);
    } finally {
      connection.socket.destroy();
    }
    context.tally?.add(reading.problem === null ? outcomeLabel(reading, firstClientClose(scriptFrames(script))) : 'undocumented');

    assert.equal(reading.problem, null, `a fuzzed frame sequence got an undocumented response: ${reading.problem}`);
    assert.ok(reading.settled, 'the server neither replied to the ping nor closed, or did not end the TCP connection after the closing handshake');
    assert.equal(connection.unparsed.length, 0, 'the server sent a frame that was cut off');
    if (reading.close === null) {
      assert.equal(reading.replies, completedMessages(scriptFrames(script)), 'an open connection did not reply to each completed message exactly once');
    }

    const after = await snapshotStore(server.running.store);
    assert.deepEqual(changedTables(before, after), [], 'a frame sequence changed stored rows');
    assert.deepEqual(errorLogLines(server, logStart), [], 'a frame sequence made the server log an internal error');
    await assertServerServes(target);
  });
}

/** The channel protocol's parser returns a frame or a documented problem for any text, and never throws. */
export function frameParserProperty(context: FrameContext): fc.IPropertyWithHooks<[string]> {
  const text = fc.oneof(
    frameScriptArbitrary(context).map((script) => scriptFrames(script).map((frame) => Buffer.from(frame.payload).toString('utf8')).join('')),
    fc.json(),
    fc.string({ unit: 'binary', maxLength: 80 }),
  );
  return fc.property(text, (input) => {
    const parsed = parseClientFrame(Buffer.from(input, 'utf8'));
    if ('problem' in parsed) {
      assert.ok(documentedFrameErrorCodes.has(parsed.problem), `parseClientFrame returned the undocumented problem ${parsed.problem}`);
      assert.ok(parsed.id === null || typeof parsed.id === 'string' || typeof parsed.id === 'number', 'parseClientFrame returned an id of another type');
      return;
    }
    assert.ok(['subscribe', 'unsubscribe', 'publish', 'auth'].includes(parsed.type), `parseClientFrame returned the type ${parsed.type}`);
  });
}
