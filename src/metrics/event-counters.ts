import { Counter, Histogram, type Registry } from 'prom-client';

import type { EventTap, TappedEvent } from '../log/event-tap.ts';
import { closeCodeLabel, errorCodeLabel, grantTypeLabel, oauthErrorLabel, reasonLabel } from './label-values.ts';

/** Buckets of the handshake duration in seconds, from 1 ms to 10 s. */
const handshakeBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

function durationSeconds(fields: TappedEvent['fields']): number | null {
  const milliseconds = fields.duration_ms;
  return typeof milliseconds === 'number' && Number.isFinite(milliseconds) && milliseconds >= 0 ? milliseconds / 1000 : null;
}

function createCounters(registry: Registry) {
  const registers = [registry];
  return {
    handshakes: new Counter({ name: 'portcullis_handshakes_total', help: 'WebSocket handshakes by outcome (accepted, rejected) and, for rejections, error code.', labelNames: ['outcome', 'code'], registers }),
    handshakeDuration: new Histogram({ name: 'portcullis_handshake_duration_seconds', help: 'Time from the upgrade request to its acceptance or rejection.', labelNames: ['outcome'], buckets: handshakeBuckets, registers }),
    closes: new Counter({ name: 'portcullis_connections_closed_total', help: 'Closed WebSocket connections by close code.', labelNames: ['code'], registers }),
    slowConsumers: new Counter({ name: 'portcullis_slow_consumer_drops_total', help: 'Connections closed with 1013 because their queued outgoing data passed --max-buffered.', registers }),
    tokenRequests: new Counter({ name: 'portcullis_token_requests_total', help: 'Token endpoint requests by grant type and outcome (success or the OAuth error code).', labelNames: ['grant_type', 'outcome'], registers }),
    refreshTokenReuse: new Counter({ name: 'portcullis_refresh_token_reuse_total', help: 'Refresh tokens used again after rotation (reused) or by another client (misused); each revokes its grant.', labelNames: ['kind'], registers }),
    revocations: new Counter({ name: 'portcullis_revocations_applied_total', help: 'Revocations that closed live connections on this node, by reason.', labelNames: ['reason'], registers }),
    revokedConnections: new Counter({ name: 'portcullis_connections_revoked_total', help: 'Connections closed with 4403 by a revocation, by reason.', labelNames: ['reason'], registers }),
    expiredConnections: new Counter({ name: 'portcullis_connections_expired_total', help: 'Connections closed with 4401 because their token expired.', registers }),
    logins: new Counter({ name: 'portcullis_logins_total', help: 'Browser login attempts by outcome (succeeded, failed, throttled).', labelNames: ['outcome'], registers }),
  };
}

type Counters = ReturnType<typeof createCounters>;

function countHandshake(counters: Counters, { event, fields }: TappedEvent): void {
  const outcome = event === 'handshake.accepted' ? 'accepted' : 'rejected';
  if (outcome === 'accepted') {
    counters.handshakes.inc({ outcome });
  } else {
    counters.handshakes.inc({ outcome, code: errorCodeLabel(fields.code) });
  }

  const seconds = durationSeconds(fields);
  if (seconds !== null) {
    counters.handshakeDuration.observe({ outcome }, seconds);
  }
}

// One handler per event name; events not listed here are not counted.
const handlers = new Map<string, (counters: Counters, event: TappedEvent) => void>(Object.entries({
  'handshake.accepted': countHandshake,
  'handshake.rejected': countHandshake,
  'connection.closed': (counters, { fields }) => counters.closes.inc({ code: closeCodeLabel(fields.close_code) }),
  'connection.slow_consumer': (counters) => counters.slowConsumers.inc(),
  'connection.revoked': (counters, { fields }) => counters.revokedConnections.inc({ reason: reasonLabel(fields.reason) }),
  'connection.expired': (counters) => counters.expiredConnections.inc(),
  'revocation.applied': (counters, { fields }) => counters.revocations.inc({ reason: reasonLabel(fields.reason) }),
  'token.issued': (counters, { fields }) => counters.tokenRequests.inc({ grant_type: grantTypeLabel(fields.grant_type), outcome: 'success' }),
  'token.rejected': (counters, { fields }) => counters.tokenRequests.inc({ grant_type: grantTypeLabel(fields.grant_type), outcome: oauthErrorLabel(fields.error) }),
  'refresh_token.reused': (counters) => counters.refreshTokenReuse.inc({ kind: 'reused' }),
  'refresh_token.misused': (counters) => counters.refreshTokenReuse.inc({ kind: 'misused' }),
  'login.succeeded': (counters) => counters.logins.inc({ outcome: 'succeeded' }),
  'login.failed': (counters) => counters.logins.inc({ outcome: 'failed' }),
  'login.throttled': (counters) => counters.logins.inc({ outcome: 'throttled' }),
}));

/**
 * Registers the counters that follow logged events in `registry` and feeds them from `tap`, so each
 * event is named once, at its log call. Returns the function that stops counting.
 */
export function countLoggedEvents(registry: Registry, tap: EventTap): () => void {
  const counters = createCounters(registry);
  return tap.subscribe((event) => handlers.get(event.event)?.(counters, event));
}
