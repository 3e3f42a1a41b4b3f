import type { Logger } from 'pino';

import type { RevocationNotice } from '../gateway/revocations.ts';
import type { RedisLink } from './redis-link.ts';
import { ThrottledWarning } from './throttled-warning.ts';

const revocationKinds = new Set<string>(['grant', 'client', 'user', 'token']);

/** Maximum length of a revoked value from another node. A token's value is its issuer and `jti`. */
const maxValueLength = 2048;
/** Maximum length of a reason from another node. */
const maxReasonLength = 200;

/** Settings of the revocation bridge. */
export interface RevocationBridgeOptions {
  link: RedisLink;
  /** Pub/sub channel shared by every node of the deployment. */
  channel: string;
  /** This node's id, which marks its own announcements when Redis sends them back. */
  nodeId: string;
  logger: Logger;
}

/**
 * Announces the revocations this node records to the other nodes, and hands theirs to a callback, so
 * that a revocation on one node closes the sockets it covers on every node at once. Each announcement
 * is the JSON `{node, kind, value, reason}`. The `revocation_events` table stays the durable path:
 * every node still polls it, so an announcement lost while Redis is down only arrives later.
 */
export class RevocationBridge {
  private unannouncedCount = 0;
  private readonly rejectedWarning: ThrottledWarning;
  private readonly announceWarning: ThrottledWarning;

  constructor(private readonly options: RevocationBridgeOptions) {
    this.rejectedWarning = new ThrottledWarning(options.logger);
    this.announceWarning = new ThrottledWarning(options.logger);
  }

  /** Revocations recorded on this node that did not reach Redis since the last `takeUnannounced`. */
  get unannounced(): number {
    return this.unannouncedCount;
  }

  /** Returns the number of unannounced revocations and starts counting again from 0. */
  takeUnannounced(): number {
    const count = this.unannouncedCount;
    this.unannouncedCount = 0;
    return count;
  }

  /** Publishes a revocation recorded on this node; without Redis it is only counted. */
  announce(revocation: RevocationNotice): void {
    const { link, channel, nodeId } = this.options;
    if (!link.available) {
      this.unannouncedCount += 1;
      return;
    }

    const payload = JSON.stringify({ node: nodeId, kind: revocation.kind, value: revocation.value, reason: revocation.reason });
    link.commands.publish(channel, payload).catch((error: unknown) => {
      this.unannouncedCount += 1;
      this.announceWarning.warn({ event: 'cluster.announce_failed', kind: revocation.kind, err: error }, 'announcing a revocation through Redis failed; other nodes read it from the database');
    });
  }

  /** Calls `apply` for every valid revocation that another node announces. */
  listen(apply: (revocation: RevocationNotice) => void): void {
    this.options.link.onMessage(this.options.channel, (payload) => {
      const notice = this.read(payload);
      if (notice) {
        apply(notice);
      }
    });
  }

  private read(payload: Buffer): RevocationNotice | null {
    let announcement: unknown;
    try {
      announcement = JSON.parse(payload.toString('utf8'));
    } catch {
      announcement = null;
    }

    const { node, kind, value, reason } = (announcement ?? {}) as Record<string, unknown>;
    if (node === this.options.nodeId) {
      return null;
    }
    const valid = typeof node === 'string'
      && typeof kind === 'string' && revocationKinds.has(kind)
      && typeof value === 'string' && value.length > 0 && value.length <= maxValueLength
      && typeof reason === 'string' && reason.length <= maxReasonLength;
    if (!valid) {
      this.rejectedWarning.warn({ event: 'cluster.revocation_rejected' }, 'dropped an invalid revocation announcement from Redis');
      return null;
    }
    return { kind: kind as RevocationNotice['kind'], value, reason };
  }
}
