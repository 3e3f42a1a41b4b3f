// Frame sequences for the frame fuzz property: well-formed `portcullis.v1` messages, other JSON and
// text, binary data, control frames, and frames with any header field broken, sent in arbitrary
// write chunks.
import fc from 'fast-check';

import { maxDataDepth } from '../../../src/channels/data.ts';
import { opcodes, type ClientFrame } from '../../support/frame-codec.ts';
import { tokenArbitrary, type TokenPool } from './token-arbitraries.ts';

/** One step of a script: a whole message, a control frame, a single raw frame, or an oversized announcement. */
export type FrameStep =
  | { kind: 'message'; opcode: number; payload: Uint8Array; cuts: number[]; pingBetween: boolean; maskKey: Uint8Array }
  | { kind: 'control'; opcode: number; payload: Uint8Array; maskKey: Uint8Array }
  | { kind: 'raw'; frame: ClientFrame }
  | { kind: 'oversize'; opcode: number; length: number; maskKey: Uint8Array };

/** The frames a fuzz input sends after the welcome frame, and where its bytes are cut into writes. */
export interface FrameScript {
  steps: FrameStep[];
  /** Offsets into the encoded bytes, modulo their length, at which a new write starts. */
  writeCuts: number[];
}

/** The identity and tokens that text messages may name. */
export interface FrameContext {
  clientId: string;
  tokens: TokenPool;
}

const maskKey = fc.uint8Array({ minLength: 4, maxLength: 4 });
const utf8 = (text: string) => new Uint8Array(Buffer.from(text, 'utf8'));

function nested(depth: number): unknown {
  let value: unknown = 'bottom';
  for (let level = 0; level < depth; level += 1) {
    value = [value];
  }
  return value;
}

/** JSON objects shaped like the four client frames of docs/protocol.md, each field valid, wrong or missing. */
function protocolObject(context: FrameContext): fc.Arbitrary<Record<string, unknown>> {
  const own = `devices/${context.clientId}`;
  const channel = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(`${own}/commands`, `${own}/telemetry`, `${own}/#`) },
    { weight: 3, arbitrary: fc.constantFrom('devices/other/commands', 'users/x/alerts', '#', 'devices/*/commands', 'Devices/X', '', 'a//b', `${'a/'.repeat(8)}a`, 'x'.repeat(201), 'a/#/b') },
    { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom<unknown>(5, null, ['a'])) },
  );
  const id = fc.oneof(
    { weight: 4, arbitrary: fc.oneof(fc.nat(), fc.string({ minLength: 1, maxLength: 64 })) },
    { weight: 1, arbitrary: fc.constantFrom<unknown>('', 'x'.repeat(65), -1, 1.5, null, true, {}, [1], 2 ** 53) },
  );
  const type = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('subscribe', 'unsubscribe', 'publish', 'auth') },
    { weight: 1, arbitrary: fc.constantFrom<unknown>('ping', '', 'SUBSCRIBE', 'message', 'welcome', 5, null) },
  );
  const data = fc.oneof(
    { weight: 5, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
    { weight: 1, arbitrary: fc.constantFrom(nested(maxDataDepth), nested(maxDataDepth + 1), nested(200)) },
  );
  const token = fc.oneof(fc.constant(context.tokens.genuine), tokenArbitrary(context.tokens), fc.constantFrom<unknown>(5, null));
  return fc.record({ type, id, channel, data, token, extra: fc.jsonValue({ maxDepth: 1 }) }, { requiredKeys: ['type'] });
}

/** Text payloads: mostly protocol frames, also other JSON, plain text, and bytes that are not UTF-8. */
function textPayload(context: FrameContext): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { weight: 12, arbitrary: protocolObject(context).map((frame) => utf8(JSON.stringify(frame))) },
    { weight: 1, arbitrary: fc.json({ maxDepth: 2 }).map(utf8) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }).map(utf8) },
    { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 10 }), fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xe2, 0x82])).map(([text, bad]) => new Uint8Array([...utf8(text), ...bad])) },
  );
}

function messageStep(context: FrameContext): fc.Arbitrary<FrameStep> {
  const text = fc.record({ opcode: fc.constant<number>(opcodes.text), payload: textPayload(context) });
  const binary = fc.record({ opcode: fc.constant<number>(opcodes.binary), payload: fc.uint8Array({ maxLength: 40 }) });
  return fc.record({
    body: fc.oneof({ weight: 5, arbitrary: text }, { weight: 1, arbitrary: binary }),
    cuts: fc.oneof({ weight: 3, arbitrary: fc.constant<number[]>([]) }, { weight: 1, arbitrary: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }) }),
    pingBetween: fc.boolean(),
    maskKey,
  }).map(({ body, cuts, pingBetween, maskKey: key }) => ({ kind: 'message', opcode: body.opcode, payload: body.payload, cuts, pingBetween, maskKey: key }));
}

function closePayload(): fc.Arbitrary<Uint8Array> {
  const withCode = (code: number, reason: Uint8Array) => {
    const payload = new Uint8Array(2 + reason.length);
    new DataView(payload.buffer).setUint16(0, code);
    payload.set(reason, 2);
    return payload;
  };
  return fc.oneof(
    fc.tuple(fc.constantFrom(1000, 1001, 1003, 1007, 1008, 1011, 3000, 4000, 4999), fc.string({ maxLength: 30 }).map(utf8)).map(([code, reason]) => withCode(code, reason)),
    fc.constantFrom(0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535).map((code) => withCode(code, new Uint8Array())),
    fc.constantFrom(new Uint8Array(), new Uint8Array([0x03]), withCode(1000, new Uint8Array([0xff, 0xfe]))),
  );
}

function controlStep(): fc.Arbitrary<FrameStep> {
  return fc.oneof(
    fc.record({ opcode: fc.constant<number>(opcodes.ping), payload: fc.oneof(fc.uint8Array({ maxLength: 125 }), fc.uint8Array({ minLength: 126, maxLength: 130 })) }),
    fc.record({ opcode: fc.constant<number>(opcodes.pong), payload: fc.uint8Array({ maxLength: 125 }) }),
    fc.record({ opcode: fc.constant<number>(opcodes.close), payload: closePayload() }),
  ).chain((control) => maskKey.map((key): FrameStep => ({ kind: 'control', ...control, maskKey: key })));
}

function rawStep(): fc.Arbitrary<FrameStep> {
  return fc.record({
    fin: fc.boolean(),
    rsv: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 7 }) }),
    opcode: fc.integer({ min: 0, max: 15 }),
    maskKey: fc.oneof({ weight: 4, arbitrary: maskKey.map((key): Uint8Array | null => key) }, { weight: 1, arbitrary: fc.constant(null) }),
    payload: fc.uint8Array({ maxLength: 30 }),
  }).map((frame): FrameStep => ({ kind: 'raw', frame }));
}

function oversizeStep(): fc.Arbitrary<FrameStep> {
  return fc.record({
    opcode: fc.constantFrom<number>(opcodes.text, opcodes.binary),
    length: fc.constantFrom(65_537, 1_048_576, 2 ** 53, 2 ** 63),
    maskKey,
  }).map((step): FrameStep => ({ kind: 'oversize', ...step }));
}

/** Scripts of one to six steps, mostly well-formed messages, with random write cuts. */
export function frameScriptArbitrary(context: FrameContext): fc.Arbitrary<FrameScript> {
  const step = fc.oneof(
    { weight: 16, arbitrary: messageStep(context) },
    { weight: 2, arbitrary: controlStep() },
    { weight: 2, arbitrary: rawStep() },
    { weight: 1, arbitrary: oversizeStep() },
  );
  return fc.record({
    steps: fc.array(step, { minLength: 1, maxLength: 6 }),
    writeCuts: fc.oneof({ weight: 2, arbitrary: fc.constant<number[]>([]) }, { weight: 1, arbitrary: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }) }),
  });
}

/** Expands a message step into its fragments: the first with the opcode, the rest continuations. */
function fragmentsOf(step: Extract<FrameStep, { kind: 'message' }>): ClientFrame[] {
  const bounds = [...new Set(step.cuts.map((cut) => cut % (step.payload.length + 1)))].sort((left, right) => left - right);
  const edges = [0, ...bounds.filter((bound) => bound > 0), step.payload.length];
  const pieces = edges.slice(1).map((end, index) => step.payload.subarray(edges[index], end));
  const frames = pieces.map((payload, index): ClientFrame => ({
    fin: index === pieces.length - 1,
    rsv: 0,
    opcode: index === 0 ? step.opcode : opcodes.continuation,
    maskKey: step.maskKey,
    payload,
  }));
  // A control frame may come between the fragments of a message (RFC 6455 section 5.4).
  if (step.pingBetween && frames.length > 1) {
    frames.splice(1, 0, { fin: true, rsv: 0, opcode: opcodes.ping, maskKey: step.maskKey, payload: utf8('between') });
  }
  return frames;
}

/** Expands a script into every frame it sends, in order. */
export function scriptFrames(script: FrameScript): ClientFrame[] {
  return script.steps.flatMap((step): ClientFrame[] => {
    switch (step.kind) {
      case 'message':
        return fragmentsOf(step);
      case 'control':
        return [{ fin: true, rsv: 0, opcode: step.opcode, maskKey: step.maskKey, payload: step.payload }];
      case 'raw':
        return [step.frame];
      case 'oversize':
        return [{ fin: true, rsv: 0, opcode: step.opcode, maskKey: step.maskKey, payload: new Uint8Array(), announcedLength: step.length }];
    }
  });
}

/**
 * Counts the data messages the frames complete before the first close frame. On a connection the
 * server kept open, every frame was valid, and each such message gets exactly one reply.
 */
export function completedMessages(frames: ClientFrame[]): number {
  let count = 0;
  for (const frame of frames) {
    if (frame.opcode === opcodes.close) {
      break;
    }
    const isData = frame.opcode === opcodes.text || frame.opcode === opcodes.binary || frame.opcode === opcodes.continuation;
    if (isData && frame.fin) {
      count += 1;
    }
  }
  return count;
}

/** Returns the payload of the first close frame the client sends, or null when it sends none. */
export function firstClientClose(frames: ClientFrame[]): Uint8Array | null {
  return frames.find((frame) => frame.opcode === opcodes.close)?.payload ?? null;
}
