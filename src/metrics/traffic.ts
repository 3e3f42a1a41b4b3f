import { Counter, type Registry } from 'prom-client';

/**
 * Running totals of the WebSocket frames the gateway receives and sends, and of their payload bytes
 * (frame headers not included). They are plain numbers because the fan-out path adds to them once
 * per frame and subscriber; the counters of the scrape read them.
 */
export class TrafficTotals {
  messagesReceived = 0;
  bytesReceived = 0;
  messagesSent = 0;
  bytesSent = 0;
}

type TotalName = keyof TrafficTotals;

function counterOf(registry: Registry, totals: TrafficTotals, name: string, help: string, total: TotalName): Counter {
  let reported = 0;
  return new Counter({
    name,
    help,
    registers: [registry],
    // Adds what arrived since the last scrape, so the counter never goes back.
    collect(this: Counter) {
      const delta = totals[total] - reported;
      reported = totals[total];
      if (delta > 0) {
        this.inc(delta);
      }
    },
  });
}

/** Registers the message and byte counters of the gateway's traffic in `registry`. */
export function registerTrafficCounters(registry: Registry, totals: TrafficTotals): void {
  counterOf(registry, totals, 'portcullis_messages_received_total', 'WebSocket messages received from clients.', 'messagesReceived');
  counterOf(registry, totals, 'portcullis_received_bytes_total', 'Payload bytes of the WebSocket messages received from clients.', 'bytesReceived');
  counterOf(registry, totals, 'portcullis_messages_sent_total', 'WebSocket messages sent to clients, one per recipient.', 'messagesSent');
  counterOf(registry, totals, 'portcullis_sent_bytes_total', 'Payload bytes of the WebSocket messages sent to clients, counted per recipient.', 'bytesSent');
}
