import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SinkName } from './message.js';
import { nodeVersion } from './version.js';

/**
 * Every reason a sink refuses a message for good with (`rejected(reason, …)`: the `reason` label of
 * mqtt_ingest_dead_letters_total), by sink: Pub/Sub's limits (src/sinks/pubsub/outgoing.ts) and its INVALID_ARGUMENT
 * (classify.ts), BigQuery's oversized and refused rows (src/sinks/bigquery/: InvalidReason, rowOutcomes). The file
 * sink refuses nothing. test/fresh-node-metrics.test.ts checks the list against the sinks' sources.
 */
export const SINK_DEAD_LETTER_REASONS: Readonly<Record<SinkName, readonly string[]>> = {
  pubsub: ['attribute_too_long', 'too_large', 'invalid_argument'],
  bigquery: ['invalid', 'too_large', 'rejected'],
  file: [],
};
/** Reasons of the routes (src/routes/types.ts RouteDeadLetterReason), for every sink while a routes file is loaded. */
export const ROUTE_DEAD_LETTER_REASONS = ['no_route', 'field_invalid', 'decode_failed'] as const;
/** Stored bytes that fail their checksum at lease (src/spool/checksum.ts), for every sink. */
export const SPOOL_DEAD_LETTER_REASONS = ['corrupt'] as const;

/**
 * The reasons an enabled sink can dead-letter with. Not `sink_disabled`: that is counted at start, and only for a
 * sink that is not enabled.
 */
export function deadLetterReasons(sink: SinkName, options: { routes: boolean }): string[] {
  return [...SINK_DEAD_LETTER_REASONS[sink], ...(options.routes ? ROUTE_DEAD_LETTER_REASONS : []), ...SPOOL_DEAD_LETTER_REASONS];
}

/**
 * Every metric of the node, in one registry. Names start `mqtt_ingest_` (contract §3). Labels never
 * carry secrets: only sink names, reasons from a fixed vocabulary, and broker modes.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly messagesReceived = new Counter({
    name: 'mqtt_ingest_messages_received_total',
    help: 'Messages committed to the spool.',
    registers: [this.registry],
  });
  readonly duplicatesSkipped = new Counter({
    name: 'mqtt_ingest_duplicates_skipped_total',
    help: 'Broker redeliveries (DUP) of messages the spool already held; acknowledged, not stored twice.',
    registers: [this.registry],
  });
  readonly messagesDelivered = new Counter({
    name: 'mqtt_ingest_messages_delivered_total',
    help: 'Messages delivered, per sink.',
    labelNames: ['sink'] as const,
    registers: [this.registry],
  });
  readonly deliveryFailures = new Counter({
    name: 'mqtt_ingest_delivery_failures_total',
    help: 'Failed delivery attempts that will be retried, per sink and reason.',
    labelNames: ['sink', 'reason'] as const,
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'mqtt_ingest_dead_letters_total',
    help: 'Messages moved to the dead-letter store, per sink and reason.',
    labelNames: ['sink', 'reason'] as const,
    registers: [this.registry],
  });
  readonly deadLettersHeld = new Gauge({
    name: 'mqtt_ingest_dead_letters',
    help: 'Dead letters currently held in the spool.',
    registers: [this.registry],
  });
  readonly propertiesDropped = new Counter({
    name: 'mqtt_ingest_properties_dropped_total',
    help: "MQTT 5 properties a sink left out of a delivered message because they do not fit its destination's limits, per sink and reason.",
    labelNames: ['sink', 'reason'] as const,
    registers: [this.registry],
  });
  readonly routeMessages = new Counter({
    name: 'mqtt_ingest_route_messages_total',
    help:
      'Messages per route of the routes file (ROUTES_FILE) and outcome (delivered, dropped, dead_lettered), counted once per message ' +
      'when the first sink (Pub/Sub, else BigQuery, else the file sink) is done with it; route "unmatched" counts what matches no route.',
    labelNames: ['route', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly messagesDropped = new Counter({
    name: 'mqtt_ingest_messages_dropped_total',
    help: 'Messages acknowledged and never sent, because their route says drop: true (or, route "unmatched", the routes file says unmatched: drop).',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  readonly sparkplugSeqGaps = new Counter({
    name: 'mqtt_ingest_sparkplug_seq_gaps_total',
    help: 'Sparkplug messages whose seq does not follow the previous message of the same edge node (messages lost or reordered on the way), counted once per message.',
    registers: [this.registry],
  });
  readonly sparkplugUnresolved = new Counter({
    name: 'mqtt_ingest_sparkplug_unresolved_total',
    help: 'Sparkplug metrics that no birth resolved (an alias the births in effect do not name, data before any birth), counted once per metric.',
    registers: [this.registry],
  });
  readonly rejectedInbound = new Counter({
    name: 'mqtt_ingest_messages_rejected_total',
    help: 'Inbound messages refused before the spool, per reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly spoolMessages = new Gauge({
    name: 'mqtt_ingest_spool_messages',
    help: 'Messages held in the spool (not yet delivered to every sink).',
    registers: [this.registry],
  });
  readonly spoolPending = new Gauge({
    name: 'mqtt_ingest_spool_pending_messages',
    help: 'Messages waiting for delivery, per sink.',
    labelNames: ['sink'] as const,
    registers: [this.registry],
  });
  readonly spoolBytes = new Gauge({
    name: 'mqtt_ingest_spool_bytes',
    help: 'Bytes of messages and dead letters held in the spool.',
    registers: [this.registry],
  });
  readonly spoolMaxBytes = new Gauge({
    name: 'mqtt_ingest_spool_max_bytes',
    help: 'SPOOL_MAX_BYTES: above it the node stops acknowledging (back-pressure).',
    registers: [this.registry],
  });
  readonly spoolOldestAge = new Gauge({
    name: 'mqtt_ingest_spool_oldest_age_seconds',
    help: 'Age of the oldest message still waiting for a sink.',
    registers: [this.registry],
  });
  readonly spoolFull = new Gauge({
    name: 'mqtt_ingest_spool_full',
    help: '1 while the spool is full and the node applies back-pressure.',
    registers: [this.registry],
  });
  readonly spoolDiskFree = new Gauge({
    name: 'mqtt_ingest_spool_disk_free_bytes',
    help: 'Room the spool can still use: free bytes of its file system plus free pages inside spool.db. The spool is full below SPOOL_MIN_FREE_BYTES.',
    registers: [this.registry],
  });
  readonly commitSeconds = new Histogram({
    name: 'mqtt_ingest_spool_commit_seconds',
    help: 'Duration of spool commits (one transaction per group).',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly sinkWriteSeconds = new Histogram({
    name: 'mqtt_ingest_sink_write_seconds',
    help: 'Duration of one batch write, per sink.',
    labelNames: ['sink'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly sinkUp = new Gauge({
    name: 'mqtt_ingest_sink_up',
    help: '1 when the sink\'s last write succeeded, 0 while it is failing.',
    labelNames: ['sink'] as const,
    registers: [this.registry],
  });
  readonly brokerRestarts = new Counter({
    name: 'mqtt_ingest_broker_restarts_total',
    help: 'Restarts of the supervised broker after it died.',
    registers: [this.registry],
  });
  readonly brokerUp = new Gauge({
    name: 'mqtt_ingest_broker_up',
    help: '1 while the broker accepts connections.',
    registers: [this.registry],
  });
  readonly sourceConnected = new Gauge({
    name: 'mqtt_ingest_source_connected',
    help: '1 while the subscriber is connected and subscribed.',
    registers: [this.registry],
  });
  readonly sourceReconnects = new Counter({
    name: 'mqtt_ingest_source_reconnects_total',
    help: 'Reconnections of the subscriber.',
    registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: 'mqtt_ingest_ready',
    help: '1 when /readyz answers 200.',
    registers: [this.registry],
  });

  /** Always 1; the version is in the label, so a dashboard or alert can tell which build a node runs. */
  readonly buildInfo = new Gauge({
    name: 'mqtt_ingest_build_info',
    help: 'Always 1; the version label is the version of mqtt-ingest this node runs.',
    labelNames: ['version'] as const,
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'mqtt_ingest_process_' });
    this.buildInfo.set({ version: nodeVersion() }, 1);
  }

  /**
   * Shows mqtt_ingest_dead_letters_total at 0 for each of these sinks and each reason it can dead-letter with, from
   * before the first scrape. A series that first appears at 1 is no increase to Prometheus (`increase()` needs two
   * samples of the series), so without the 0 the first dead letter of a reason after a start would not fire
   * MqttIngestDeadLetters (deploy/monitoring/alerts.yml).
   */
  initDeadLetters(sinks: readonly SinkName[], options: { routes: boolean }): void {
    for (const sink of sinks) for (const reason of deadLetterReasons(sink, options)) this.deadLetters.inc({ sink, reason }, 0);
  }
}
