import type { WebSocket } from 'ws';

import { closeCodes } from '../errors.ts';

/**
 * Closes every open WebSocket with 1001 for a shutdown. Each first gets a `reconnect` frame with a
 * delay drawn evenly from the drain window, so the clients of a stopping node spread their
 * reconnects over the other nodes instead of arriving all at once. Returns how many were closed.
 */
export function closeForShutdown(sockets: Iterable<WebSocket>, drainWindowMs: number, random: () => number = Math.random): number {
  let closed = 0;
  for (const socket of sockets) {
    if (socket.readyState !== socket.OPEN) {
      continue;
    }
    socket.send(JSON.stringify({ type: 'reconnect', after_ms: Math.floor(random() * drainWindowMs) }));
    socket.close(closeCodes.goingAway, 'server shutting down');
    closed += 1;
  }
  return closed;
}
