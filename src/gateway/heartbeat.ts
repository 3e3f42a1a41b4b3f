import type { Logger } from 'pino';
import type { WebSocket } from 'ws';

/** Settings of the heartbeat. */
export interface HeartbeatOptions {
  /** Time between two pings to every socket, in milliseconds (the `heartbeatIntervalMs` option, default 25000). */
  intervalMs: number;
  logger: Logger;
}

interface TrackedSocket {
  connectionId: string;
  /** Pings sent since the last pong. */
  unansweredPings: number;
}

/** Pings left unanswered, in a row, after which a socket is terminated. */
const maxUnansweredPings = 2;

/**
 * Pings every tracked socket once per interval from one shared timer, and terminates a socket that
 * left two pings in a row unanswered. A peer that vanished without a close (a dropped network, a
 * sleeping laptop) is then released between two and three intervals after its last pong. The pings
 * also keep proxies and load balancers from closing an otherwise idle connection.
 */
export class Heartbeat {
  private readonly sockets = new Map<WebSocket, TrackedSocket>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: HeartbeatOptions) {}

  /** Number of sockets being pinged. */
  get size(): number {
    return this.sockets.size;
  }

  /** Starts the shared timer, which does not keep the process alive. */
  start(): void {
    if (this.timer) {
      return;
    }
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and stops tracking every socket, without closing any. */
  stop(): void {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    this.sockets.clear();
  }

  /** Pings an accepted socket from the next tick on, until it closes. */
  track(connectionId: string, socket: WebSocket): void {
    const tracked: TrackedSocket = { connectionId, unansweredPings: 0 };
    this.sockets.set(socket, tracked);
    socket.on('pong', () => {
      tracked.unansweredPings = 0;
    });
    socket.once('close', () => {
      this.sockets.delete(socket);
    });
  }

  /** Terminates the sockets that missed too many pongs and pings the others. */
  tick(): void {
    for (const [socket, tracked] of this.sockets) {
      if (tracked.unansweredPings >= maxUnansweredPings) {
        this.options.logger.info({ event: 'connection.heartbeat_timeout', connection_id: tracked.connectionId, unanswered_pings: tracked.unansweredPings }, 'terminating a connection that stopped answering pings');
        this.sockets.delete(socket);
        // A peer that ignores pings would ignore a close frame too, so the connection is destroyed at once.
        socket.terminate();
        continue;
      }

      tracked.unansweredPings += 1;
      // A socket that is already closing ignores the ping, and its close event removes it here.
      socket.ping();
    }
  }
}
