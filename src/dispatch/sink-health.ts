import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { SinkStatus } from '../sinks/sink.js';

/** A failure is logged again at most this often unless its kind or reason changes. */
export const LOUD_LOG_INTERVAL_MS = 60_000;

/** What went wrong with a write, as the sink's classifier says it (reasons come from a fixed vocabulary). */
export interface SinkProblem {
  /** `failing`: a person must fix something; `degraded`: transient, the dispatcher retries. */
  kind: 'failing' | 'degraded';
  reason: string;
  detail: string;
}

export interface SinkHealthOptions {
  logger: Logger;
  clock: Clock;
  /** Fields of every log line (the sink's name and destination). */
  context: Record<string, unknown>;
  /** Logged once when writes succeed again after a failure. */
  recovered: string;
  /** The error logged while failing, from the problem's detail. */
  failing: (detail: string) => string;
  /** The warning logged while degraded. */
  degraded: string;
  /** The status detail while degraded, from the problem's reason. */
  degradedDetail: (reason: string) => string;
}

/**
 * A sink's status() and its loud logging: failing is logged as an error and degraded as a warning, each at
 * most once per LOUD_LOG_INTERVAL_MS for the same kind and reason; a recovery is logged once.
 */
export class SinkHealth {
  private current: SinkStatus = { state: 'ok' };
  private lastLoud?: { key: string; at: number };

  constructor(private readonly o: SinkHealthOptions) {}

  status(): SinkStatus {
    return { ...this.current };
  }

  /** Takes the worst problem of a write (undefined: none) and whether it delivered anything. */
  record(worst: SinkProblem | undefined, anyDelivered: boolean, extra: Record<string, unknown> = {}): void {
    const o = this.o;
    const now = o.clock.now();
    if (anyDelivered) this.current.lastDeliveryAt = new Date(now).toISOString();
    if (!worst) {
      if (this.current.state !== 'ok') o.logger.info(o.context, o.recovered);
      this.current = { ...this.current, state: 'ok', detail: undefined };
      this.lastLoud = undefined;
      return;
    }
    const state = worst.kind;
    const detail = state === 'failing' ? worst.detail : o.degradedDetail(worst.reason);
    this.current = { ...this.current, state, detail, lastError: `${worst.reason}: ${worst.detail}`, lastErrorAt: new Date(now).toISOString() };
    const key = `${worst.kind}:${worst.reason}`;
    if (this.lastLoud && this.lastLoud.key === key && now - this.lastLoud.at < LOUD_LOG_INTERVAL_MS) return;
    this.lastLoud = { key, at: now };
    const context = { ...o.context, reason: worst.reason, detail: worst.detail, ...extra };
    if (state === 'failing') o.logger.error(context, o.failing(worst.detail));
    else o.logger.warn(context, o.degraded);
  }
}
