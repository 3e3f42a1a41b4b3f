import type { Logger } from 'pino';

import { adminStatsChannel } from '../channels/admin-channels.ts';
import type { ChannelBroker } from '../channels/broker.ts';
import { operatorPublisher } from '../channels/publish.ts';
import type { ConnectionRegistry } from '../gateway/registry.ts';
import type { ConnectionSampler } from './admin-stats.ts';

/** Time between two samples and two `admin/stats` messages, in milliseconds. */
export const statsIntervalMs = 5_000;

/** The data of one `admin/stats` message. */
export interface LiveCounts {
  /** Epoch milliseconds of the sample. */
  time: number;
  /** Live connections on the node that published the message, by kind. */
  browser: number;
  device: number;
}

/**
 * Samples this node's live connections every 5 s for the console chart and publishes the counts on
 * `admin/stats` to the subscribers on this node, which can only be admin browser sessions. Returns
 * the function that stops it.
 */
export function startStatsFeed(options: { registry: ConnectionRegistry; broker: ChannelBroker; sampler: ConnectionSampler; logger: Logger }): () => void {
  const timer = setInterval(() => {
    try {
      options.sampler.sample();
      const counts: LiveCounts = { time: Date.now(), ...options.registry.countByKind() };
      // Delivered on this node only, because through Redis every node's counts would reach every
      // admin and the page could not tell them apart.
      // NOTE: behind a load balancer, the page's WebSocket may reach another node than its API
      // requests, so the live counts and the connections table can come from different nodes.
      options.broker.deliverLocally({ channel: adminStatsChannel, data: counts, publisher: { ...operatorPublisher }, timestamp: counts.time });
    } catch (error) {
      options.logger.error({ event: 'admin.stats_failed', err: error }, 'publishing the admin console counts failed');
    }
  }, statsIntervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
