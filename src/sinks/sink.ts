import type { DeliveryOutcome, DestinationHealth } from '../core/outcome.js';
import type { SinkName, SpooledMessage } from '../core/message.js';

/**
 * Where the routes (ROUTES_FILE, src/routes) send one message, for each sink its route uses. The sink runner
 * sets it on a message before handing it to a sink whose part is set; a message without it goes where it
 * always has (PUBSUB_TOPIC, the raw table, the plain NDJSON line).
 */
export interface RouteTargets {
  /** The route's name. */
  route: string;
  pubsub?: PubsubTarget;
  bigquery?: BigQueryTarget;
  file?: FileTarget;
}

/** A route's Pub/Sub message: its topic, data, the attributes added to the contract's, and an ordering key. */
export interface PubsubTarget {
  /** `projects/P/topics/T` */
  topic: string;
  data: Buffer;
  attributes: Record<string, string>;
  orderingKey?: string;
}

/** A BigQuery row as insertAll takes it (JSON values; an INT64 or NUMERIC beyond 2^53 as its digits). */
export type BigQueryRow = Record<string, string | number | boolean | null>;

/**
 * A route's rows, for a table in BIGQUERY_DATASET: one typed row (insertId the message_id), or for a Sparkplug
 * route one row per metric (insertId the message_id and the metric's index), so that a retry is de-duplicated
 * row by row. The message is delivered once all its rows are stored.
 */
export interface BigQueryTarget {
  table: string;
  rows: { insertId: string; row: BigQueryRow }[];
}

/** What a route adds to the message's NDJSON line (`fields`), beside its name (`route`). */
export interface FileTarget {
  /** One JSON object of the topic variables and the typed fields, as text (an INT64 beyond 2^53 stays exact). */
  fieldsJson: string;
}

/** A message as a sink receives it: routed, or not (see RouteTargets). */
export type DeliveryMessage = SpooledMessage & { routed?: RouteTargets };

/**
 * A problem of the destination that a sink found outside a write (BigQuery's table check at start and its
 * recheck), in the classifiers' words: reasons come from a fixed vocabulary, `detail` says what to do.
 */
export interface SinkCondition {
  health: DestinationHealth;
  reason: string;
  detail: string;
}

/** Receives a sink's standing condition: a problem, or undefined once there is none. */
export type ConditionReport = (condition: SinkCondition | undefined) => void;

/**
 * How a sink's health is told to operators. Static data: the sink runner owns the status and the log lines, the
 * sink only lends its words.
 */
export interface SinkDescription {
  /** The status detail while nothing is wrong (the file sink: where it writes). */
  detail?: string;
  /** Fields of every health log line besides the sink's name: the destination (topic, table). */
  context?: Record<string, unknown>;
  /**
   * Words of the health log lines: a failing destination is logged as an error (`<failing>: <detail>`), a
   * degraded one as the `degraded` warning, each at most once a minute for the same reason, and a recovery once
   * (`recovered`). While degraded the status detail reads `<action> failed (<reason>); the dispatcher retries
   * with backoff`. A sink without them is logged by the runner's own retry lines only.
   */
  words?: { failing: string; degraded: string; recovered: string; action: string };
}

/**
 * A destination. Each hides its SDK behind this small interface (ARCHITECTURE §4).
 * `write` answers one outcome per message, in the batch's order. A thrown error means the whole batch
 * is retryable (the dispatcher classifies it as `retryable` with reason `error`, health `degraded`).
 * A sink keeps no status of its own: its runner derives it from the outcomes (and from `watchCondition`).
 */
export interface Sink {
  readonly name: SinkName;
  /** Largest batch the dispatcher hands to `write`. */
  readonly maxBatchMessages: number;
  /** Largest total payload bytes in one batch (a single larger message is still passed alone). */
  readonly maxBatchBytes: number;
  /** How many `write` calls may run at once. */
  readonly maxInFlight: number;
  readonly describe: SinkDescription;
  /** Checks that need no network and prepares clients. Must not block on an unreachable destination. */
  start(): Promise<void>;
  /** Refused (rejects) before `start` and after `close`. */
  write(batch: DeliveryMessage[]): Promise<DeliveryOutcome[]>;
  /**
   * Only for a sink that learns about its destination outside a write. The runner calls it once, when it takes
   * the sink (which may already be started); the sink calls `report` at once with the condition it knows, and
   * again whenever that changes.
   */
  watchCondition?(report: ConditionReport): void;
  /** Flushes what was delivered (files) and releases clients. Idempotent. */
  close(): Promise<void>;
}
