// Decides whether what the server sent on a fuzzed connection is documented: the frames of
// docs/protocol.md, `error` codes of its "Errors on an open connection" table, and close codes of
// docs/errors.md or the echo of the client's own close frame.
import { errorCatalogue } from '../../../src/errors.ts';
import { documentedCloseCodes, documentedFrameErrorCodes, isCatalogueCode, shutdownCloseReason } from './documented-outcomes.ts';
import { opcodes, readClose, type ServerFrame } from '../../support/frame-codec.ts';

/** Types of the text frames a server sends after the welcome frame (docs/protocol.md). */
const serverFrameTypes = new Set(['message', 'error', 'subscribed', 'unsubscribed', 'published', 'auth_ok', 'expiring', 'reconnect']);

/** Tells whether a frame replies to one client request. An `unsubscribed` with a `reason` is sent unrequested. */
function isReply(frame: Record<string, unknown>): boolean {
  if (frame.type === 'unsubscribed') {
    return !('reason' in frame);
  }
  return frame.type === 'error' || frame.type === 'subscribed' || frame.type === 'published' || frame.type === 'auth_ok';
}

function parseText(frame: ServerFrame): Record<string, unknown> | null {
  try {
    const value = JSON.parse(frame.payload.toString('utf8')) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : null;
  } catch {
    return null;
  }
}

function textFrameProblem(frame: ServerFrame): string | null {
  const message = parseText(frame);
  if (message === null) {
    return `a text frame that is not a JSON object: ${JSON.stringify(frame.payload.toString('utf8').slice(0, 80))}`;
  }
  if (!serverFrameTypes.has(String(message.type))) {
    return `a frame of the undocumented type ${JSON.stringify(message.type)}`;
  }
  if (message.type !== 'error') {
    return null;
  }
  if (!documentedFrameErrorCodes.has(String(message.code))) {
    return `an error frame with the code ${JSON.stringify(message.code)}, which docs/protocol.md does not list for an open connection`;
  }
  if (message.description !== errorCatalogue[message.code as keyof typeof errorCatalogue].description) {
    return `an error frame ${String(message.code)} without its fixed description`;
  }
  return null;
}

function closeProblem(frame: ServerFrame, clientClose: Uint8Array | null): string | null {
  const { code, reason } = readClose(frame.payload);
  const echo = clientClose === null ? null : readClose(clientClose);
  // docs/protocol.md: the server replies to a client's close frame with a close frame with the same code.
  if (echo !== null && code === echo.code) {
    return reason === '' || reason === echo.reason ? null : `a close ${code} with the reason ${JSON.stringify(reason)}`;
  }
  if (!documentedCloseCodes.has(code)) {
    return `the close code ${code}, which docs/errors.md does not list`;
  }
  if (reason !== '' && !isCatalogueCode(reason) && reason !== shutdownCloseReason) {
    return `a close ${code} with the reason ${JSON.stringify(reason)}, which is neither a catalogue code nor fixed text`;
  }
  return null;
}

/** Everything the server sent on one connection, read against the docs. */
export interface ConnectionReading {
  /** Null when every frame is documented, else the first problem. */
  problem: string | null;
  /** The server's close frame, or null while the connection is open. */
  close: { code: number; reason: string } | null;
  /** Number of frames after the welcome frame that reply to a request. */
  replies: number;
}

/**
 * Reads the server's frames: the first must be the welcome frame, and every later one must be a
 * documented text frame, a pong, a ping or the close frame, the last one sent. Frames are never
 * masked and carry no RSV bit, because no extension is negotiated.
 */
export function readServerFrames(frames: ServerFrame[], clientClose: Uint8Array | null): ConnectionReading {
  const reading: ConnectionReading = { problem: null, close: null, replies: 0 };
  const welcome = frames[0] ? parseText(frames[0]) : null;
  if (welcome?.type !== 'welcome') {
    return { ...reading, problem: 'the first frame was not the welcome frame' };
  }

  for (const frame of frames.slice(1)) {
    if (reading.close) {
      return { ...reading, problem: 'the server sent a frame after its close frame' };
    }
    if (frame.masked || frame.rsv !== 0 || !frame.fin) {
      return { ...reading, problem: `a server frame with masked=${frame.masked}, rsv=${frame.rsv}, fin=${frame.fin}` };
    }

    let problem: string | null = null;
    if (frame.opcode === opcodes.text) {
      problem = textFrameProblem(frame);
      reading.replies += problem === null && isReply(parseText(frame)!) ? 1 : 0;
    } else if (frame.opcode === opcodes.close) {
      problem = closeProblem(frame, clientClose);
      reading.close = readClose(frame.payload);
    } else if (frame.opcode !== opcodes.pong && frame.opcode !== opcodes.ping) {
      problem = `a server frame with opcode ${frame.opcode}`;
    }
    if (problem) {
      return { ...reading, problem };
    }
  }
  return reading;
}
