import type { Duplex } from 'node:stream';

/** A socket written to by `writeBatched` since the last flush. */
interface BatchedSocket {
  socket: Duplex;
  /** True when `writeBatched` corked it, so the flush uncorks it. */
  corkedHere: boolean;
}

const batched: BatchedSocket[] = [];
// Bytes each socket got from `writeBatched` since the last flush.
const queuedBytes = new WeakMap<Duplex, number>();
let flushScheduled = false;

/**
 * Writes `data` to a socket that stays corked until the check phase of the current event-loop
 * iteration, so that every frame the socket gets from the messages read in this iteration leaves in
 * one write. Each write costs a system call and, over TLS, at least one record, which dominates the
 * cost of fan-out. One `setImmediate` flushes all sockets, so corking costs no timer per socket.
 */
export function writeBatched(socket: Duplex, data: Buffer): void {
  const queued = queuedBytes.get(socket);
  if (queued === undefined) {
    const corkedHere = !socket.writableCorked;
    if (corkedHere) {
      socket.cork();
    }
    batched.push({ socket, corkedHere });
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushBatched);
    }
  }

  queuedBytes.set(socket, (queued ?? 0) + data.length);
  socket.write(data);
}

/**
 * Returns the bytes a socket got from `writeBatched` in this event-loop iteration. They sit in its
 * write buffer until the flush, however fast the peer reads, so a slow-consumer check leaves them out.
 */
export function bytesQueuedThisIteration(socket: Duplex): number {
  return queuedBytes.get(socket) ?? 0;
}

function flushBatched(): void {
  flushScheduled = false;
  for (const { socket, corkedHere } of batched.splice(0)) {
    queuedBytes.delete(socket);
    if (!corkedHere) {
      continue;
    }
    // One socket that fails must not keep the others corked.
    try {
      socket.uncork();
    } catch (error) {
      socket.destroy(error as Error);
    }
  }
}
