import { withCode, type ErrorCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Metrics } from '../../core/metrics.js';

/**
 * Why the embedded broker refused a PUBLISH before the spool: the `reason` label of
 * `mqtt_ingest_messages_rejected_total`, a fixed vocabulary (never client input).
 *
 * - `not_authorized`: the ACL denies the topic; acknowledged and dropped, as Mosquitto does.
 * - `reserved_topic`: a publish to `$SYS`; refused, the connection is closed.
 * - `invalid_topic`: refused by Aedes before our hooks (an empty topic, `+` or `#` in it, more levels than
 *   Aedes takes), or by the packet guard because the topic's bytes are not valid UTF-8 or hold U+0000
 *   (MQTT-1.5.3-1, -2); the connection is closed.
 * - `commit_failed`: the spool could not commit it; not acknowledged, the connection is closed and the
 *   publisher resends it after reconnecting.
 * - `quota_exceeded`: an MQTT 5 QoS 1 or 2 publish while the spool is full; answered 0x97 (Quota exceeded), not
 *   stored, the connection kept (an MQTT 3.1.1 publisher's message waits unacknowledged instead).
 */
export type InboundRejection = 'not_authorized' | 'reserved_topic' | 'invalid_topic' | 'commit_failed' | 'quota_exceeded';

/** A warning per reason at most this often; the ones in between are counted in the next warning. */
export const REJECTION_LOG_INTERVAL_MS = 10_000;

/**
 * Warnings about what a client may repeat as fast as it can send: at most one per reason per interval, each
 * carrying how many were not logged since the previous one (`notLoggedSinceLastWarning`), and the catalogued
 * code of its reason.
 */
export class RateLimitedWarnings<R extends string> {
  private readonly last = new Map<R, { at: number; suppressed: number }>();

  constructor(private readonly o: { logger: Logger; code: (reason: R) => ErrorCode; intervalMs?: number; now?: () => number }) {}

  warn(reason: R, fields: Record<string, unknown>, message: string): void {
    const now = (this.o.now ?? Date.now)();
    const last = this.last.get(reason);
    if (last && now - last.at < (this.o.intervalMs ?? REJECTION_LOG_INTERVAL_MS)) {
      last.suppressed += 1;
      return;
    }
    this.last.set(reason, { at: now, suppressed: 0 });
    const suppressed = last?.suppressed ? { notLoggedSinceLastWarning: last.suppressed } : {};
    this.o.logger.warn(withCode(this.o.code(reason), { reason, ...fields, ...suppressed }), message);
  }
}

/** Counts each refused PUBLISH and logs it at warn with its reason, rate-limited per reason (a client may flood). */
export class InboundRejections {
  private readonly warnings: RateLimitedWarnings<InboundRejection>;

  constructor(private readonly o: { metrics: Metrics; logger: Logger; intervalMs?: number; now?: () => number }) {
    // A commit that failed, or a full spool, is the spool's condition, not the client's: it has the spool's code.
    this.warnings = new RateLimitedWarnings({ ...o, code: (r) => (r === 'commit_failed' ? 'SPOOL_COMMIT_FAILED' : r === 'quota_exceeded' ? 'SPOOL_FULL' : 'INBOUND_REJECTED') });
  }

  record(reason: InboundRejection, fields: Record<string, unknown>, message: string): void {
    this.o.metrics.rejectedInbound.inc({ reason });
    this.warnings.warn(reason, fields, message);
  }
}
