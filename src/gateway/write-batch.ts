import type { Duplex } from 'node:stream';

// Sockets corked by `writeBatched` since the last flush.
const corked: Duplex[] = [];
let flushScheduled = false;

/**
 * Writes `data` to a socket that stays corked until the current I/O phase of the event loop ends,
 * so that every frame the socket gets from the messages read in that phase leaves in one write.
 * Each write is a TLS record and a system call of its own, which dominates the cost of fan-out.
 * One `setImmediate` flushes all sockets, so corking costs no timer per socket.
 */
export function writeBatched(socket: Duplex, data: Buffer): void {
  if (!socket.writableCorked) {
    socket.cork();
    corked.push(socket);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushCorked);
    }
  }
  socket.write(data);
}

function flushCorked(): void {
  flushScheduled = false;
  for (const socket of corked.splice(0)) {
    socket.uncork();
  }
}
