// Scenario 3: one publisher, many subscribers on one channel, in two phases. The throughput phase
// keeps a small window of messages in flight, and a message leaves the window once every subscriber
// has received it. The latency phase publishes one message at a time with a pause in between, so that
// its latencies contain no queueing behind earlier messages.
import { reportProgress } from '../child.ts';
import { fanoutChannel } from '../config.ts';
import { CpuWindow, cpuRows } from '../proc.ts';
import { connect, type BenchConnection } from './clients.ts';
import type { LoadJob, Measurement } from './job.ts';
import { percentile, runPool, sleep } from './stats.ts';

// A message that has not reached every subscriber by then counts as lost for those it missed, so
// that one dropped delivery cannot stall the run.
const messageTimeoutMs = 10_000;

interface Payload {
  seq: number;
}

/** Delivery bookkeeping shared by the subscribers' listener and the publishing loop. */
class Deliveries {
  readonly sentAt: Float64Array;
  readonly deliveredTo: Uint32Array;
  readonly latencies: Float64Array;
  delivered = 0;
  /** Called when a message has reached every subscriber. */
  onComplete: (seq: number) => void = () => {};

  constructor(readonly subscriberCount: number, messageCount: number) {
    this.sentAt = new Float64Array(messageCount);
    this.deliveredTo = new Uint32Array(messageCount);
    this.latencies = new Float64Array(subscriberCount * messageCount);
  }

  /** Records one delivery. Every subscriber has this as its message listener. */
  readonly record = (data: unknown): void => {
    const seq = (data as Payload).seq;
    this.latencies[this.delivered] = performance.now() - this.sentAt[seq];
    this.delivered += 1;
    this.deliveredTo[seq] += 1;
    if (this.deliveredTo[seq] === this.subscriberCount) {
      this.onComplete(seq);
    }
  };
}

/** Opens and subscribes `count` connections. Throws when any of them fails. */
async function openSubscribers(job: LoadJob, count: number, onData: (data: unknown) => void): Promise<BenchConnection[]> {
  const subscribers: BenchConnection[] = [];
  let firstError = '';
  const progress = setInterval(() => reportProgress(`${subscribers.length} of ${count} subscribers ready`), 1_000);
  await runPool(count, job.sizes.fanout.connectConcurrency, async () => {
    try {
      const connection = await connect(job);
      connection.onMessage(onData);
      await connection.subscribe(fanoutChannel);
      subscribers.push(connection);
      return true;
    } catch (error) {
      firstError ||= (error as Error).message;
      return false;
    }
  });
  clearInterval(progress);

  if (subscribers.length < count) {
    throw new Error(`only ${subscribers.length} of ${count} subscribers connected; first error: ${firstError}`);
  }
  return subscribers;
}

/**
 * Publishes messages `firstSeq` up to `endSeq` with at most `window` in flight, waiting `gapMs`
 * after each completed message, and resolves with the number of deliveries lost to the timeout.
 */
function publishAll(publisher: BenchConnection, deliveries: Deliveries, range: { firstSeq: number; endSeq: number; window: number; gapMs: number }): Promise<number> {
  const total = range.endSeq - range.firstSeq;
  let nextSeq = range.firstSeq;
  let finished = 0;
  let lost = 0;
  const timers = new Map<number, NodeJS.Timeout>();
  const progress = setInterval(() => reportProgress(`${finished} of ${total} messages delivered to every subscriber`), 1_000);

  return new Promise((resolve) => {
    const publishNext = () => {
      if (nextSeq >= range.endSeq) {
        return;
      }
      const seq = nextSeq++;
      timers.set(seq, setTimeout(() => {
        lost += deliveries.subscriberCount - deliveries.deliveredTo[seq];
        deliveries.onComplete(seq);
      }, messageTimeoutMs));
      deliveries.sentAt[seq] = performance.now();
      publisher.publish(fanoutChannel, { seq } satisfies Payload);
    };

    deliveries.onComplete = (seq) => {
      const timer = timers.get(seq);
      if (!timer) {
        return;
      }
      clearTimeout(timer);
      timers.delete(seq);
      finished += 1;
      if (finished === total) {
        clearInterval(progress);
        resolve(lost);
        return;
      }
      if (range.gapMs > 0) {
        setTimeout(publishNext, range.gapMs);
        return;
      }
      publishNext();
    };

    for (let index = 0; index < range.window; index += 1) {
      publishNext();
    }
  });
}

/** Measures delivered messages per second, then the latency from publish to each delivery. */
export async function measureFanout(job: LoadJob): Promise<Measurement[]> {
  const { subscribers: subscriberCount, messages, window, latencyMessages, latencyGapMs } = job.sizes.fanout;
  const deliveries = new Deliveries(subscriberCount, messages + latencyMessages);

  const subscribers = await openSubscribers(job, subscriberCount, deliveries.record);
  const publisher = await connect(job);
  await sleep(500);
  reportProgress(`${subscriberCount} subscribers ready; publishing ${messages} messages with ${window} in flight`);

  const cpu = new CpuWindow(job.serverPid);
  const lostInThroughput = await publishAll(publisher, deliveries, { firstSeq: 0, endSeq: messages, window, gapMs: 0 });
  const usage = cpu.finish();
  const throughputDeliveries = deliveries.delivered;

  reportProgress(`publishing ${latencyMessages} messages one at a time for the latency`);
  const lostInLatency = await publishAll(publisher, deliveries, { firstSeq: messages, endSeq: messages + latencyMessages, window: 1, gapMs: latencyGapMs });
  const latencies = deliveries.latencies.subarray(throughputDeliveries, deliveries.delivered);

  [...subscribers, publisher].forEach((connection) => connection.close());
  return [
    { metric: 'delivered_rate', value: throughputDeliveries / (usage.wallMs / 1_000), unit: 'messages/s' },
    { metric: 'latency_p50', value: percentile(latencies, 0.5), unit: 'ms' },
    { metric: 'latency_p99', value: percentile(latencies, 0.99), unit: 'ms' },
    { metric: 'lost', value: lostInThroughput + lostInLatency, unit: 'messages' },
    { metric: 'subscribers', value: subscriberCount, unit: 'connections' },
    { metric: 'server_cpu_per_delivery', value: (1_000 * usage.serverMs) / throughputDeliveries, unit: 'µs' },
    ...cpuRows(usage),
  ];
}
