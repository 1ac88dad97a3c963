import type { DeliveryOutcome } from '../core/outcome.js';
import type { SinkName, SpooledMessage } from '../core/message.js';

/** What a sink reports about itself for the readiness JSON and the status page. */
export interface SinkStatus {
  /** ok: last write succeeded (or none yet); degraded: retrying after errors; failing: a condition an operator must fix (missing topic, permission). */
  state: 'ok' | 'degraded' | 'failing';
  detail?: string;
  lastError?: string;
  lastErrorAt?: string;
  lastDeliveryAt?: string;
}

/**
 * A destination. Each hides its SDK behind this small interface (ARCHITECTURE §4).
 * `write` answers one outcome per message, in the batch's order. A thrown error means the whole batch
 * is retryable (the dispatcher classifies it as `retryable` with reason `error`).
 */
export interface Sink {
  readonly name: SinkName;
  /** Largest batch the dispatcher hands to `write`. */
  readonly maxBatchMessages: number;
  /** Largest total payload bytes in one batch (a single larger message is still passed alone). */
  readonly maxBatchBytes: number;
  /** How many `write` calls may run at once. */
  readonly maxInFlight: number;
  /** Checks that need no network and prepares clients. Must not block on an unreachable destination. */
  start(): Promise<void>;
  write(batch: SpooledMessage[]): Promise<DeliveryOutcome[]>;
  status(): SinkStatus;
  /** Flushes what was delivered (files) and releases clients. */
  close(): Promise<void>;
}
