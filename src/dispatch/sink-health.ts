import type { SinkName } from '../core/message.js';
import type { DeliveryOutcome } from '../core/outcome.js';
import type { Logger } from '../core/logger.js';
import { withCode } from '../core/errors.js';
import type { SinkCondition, SinkDescription } from '../sinks/sink.js';
import type { DualClock } from '../core/clock.js';

/** A failure is logged again at most this often unless its kind or reason changes. */
export const LOUD_LOG_INTERVAL_MS = 60_000;

/** What readiness (`components.sinks.<name>`) and the status page show of a sink's destination. */
export interface SinkStatus {
  /** ok: last write succeeded (or none yet); degraded: retrying after errors; failing: a condition an operator must fix (missing topic, permission). */
  state: 'ok' | 'degraded' | 'failing';
  /**
   * Why it is not ok, as the classifier's reason (a metric label: `topic_not_found`, `unavailable`, `error`…), or the
   * runner's own (`spool_ack_failed`, `slow_write`); absent while ok. The status page turns it into what to do.
   */
  reason?: string;
  detail?: string;
  lastError?: string;
  lastErrorAt?: string;
  /** When the current problem (degraded or failing) began; absent while ok. A delivery after it means the sink still delivers some. */
  problemSince?: string;
  lastDeliveryAt?: string;
}

export interface SinkHealthOptions {
  sink: SinkName;
  describe: SinkDescription;
  logger: Logger;
  /** Wall clock for the times shown, monotonic clock for the interval between loud log lines. */
  clock: DualClock;
}

/**
 * The destination's side of a sink's status, kept by its runner from what the sink reports: the outcomes of each
 * write and the sink's standing condition (`Sink.watchCondition`). The latest report wins, as they arrive in time
 * order: a write that went through clears a problem a table check found, and a table found usable again clears
 * the failure of the writes before it. Failing is logged as an error and degraded as a warning, each at most once
 * per LOUD_LOG_INTERVAL_MS for the same kind and reason, in the sink's words; a recovery is logged once.
 */
export class SinkHealth {
  private problem: SinkCondition | undefined;
  /** When the current problem began (wall clock); kept while its kind or reason changes, cleared on recovery. */
  private problemSince: number | undefined;
  private lastError: { text: string; at: number } | undefined;
  private lastDeliveryAt: number | undefined;
  /** The reason of the last write that got nothing through with nothing said against the destination; cleared by a delivery. */
  private retryReason: string | undefined;
  /** The last loud line's kind and reason, and when (monotonic). */
  private lastLoud: { key: string; at: number } | undefined;

  constructor(private readonly o: SinkHealthOptions) {}

  /** A write's outcomes: its worst destination problem (failing before degraded), else none; and whether it delivered. */
  wrote(outcomes: readonly DeliveryOutcome[]): void {
    let worst: SinkCondition | undefined;
    let firstRetry: Extract<DeliveryOutcome, { kind: 'retryable' }> | undefined;
    let failed = 0;
    for (const o of outcomes) {
      if (o.kind === 'delivered') continue;
      failed += 1;
      if (o.kind !== 'retryable') continue;
      firstRetry ??= o;
      if (o.health && (!worst || (o.health === 'failing' && worst.health !== 'failing'))) {
        worst = { health: o.health, reason: o.reason, detail: o.detail ?? o.reason };
      }
    }
    if (failed < outcomes.length) {
      this.lastDeliveryAt = this.o.clock.now();
      this.retryReason = undefined;
    }
    if (!worst && firstRetry && outcomes.every((o) => o.kind === 'retryable')) {
      // Nothing went through, with nothing said against the destination: the runner backs off all the same.
      this.lastError = { text: errorLine(firstRetry.reason, firstRetry.detail), at: this.o.clock.now() };
      this.retryReason = firstRetry.reason;
    }
    this.report(worst, { failed });
  }

  /** The sink's standing condition (undefined: none). */
  condition(condition: SinkCondition | undefined): void {
    this.report(condition, {});
  }

  status(): SinkStatus {
    const { problem, lastError, lastDeliveryAt, problemSince } = this;
    const words = this.o.describe.words;
    let detail = this.o.describe.detail;
    if (problem?.health === 'failing') detail = problem.detail;
    else if (problem && words) detail = `${words.action} failed (${problem.reason}); the dispatcher retries with backoff`;
    return {
      state: problem?.health ?? 'ok',
      // The runner shows a sink whose writes all fail as degraded even when no outcome blamed the destination.
      reason: problem?.reason ?? this.retryReason,
      detail,
      lastError: lastError?.text,
      lastErrorAt: lastError ? new Date(lastError.at).toISOString() : undefined,
      problemSince: problem && problemSince !== undefined ? new Date(problemSince).toISOString() : undefined,
      lastDeliveryAt: lastDeliveryAt !== undefined ? new Date(lastDeliveryAt).toISOString() : undefined,
    };
  }

  private report(problem: SinkCondition | undefined, extra: Record<string, unknown>): void {
    const { logger, describe, sink, clock } = this.o;
    const words = describe.words;
    const context = { sink, ...describe.context };
    if (!problem) {
      if (this.problem && words) logger.info(withCode('SINK_RECOVERED', context), words.recovered);
      this.problem = undefined;
      this.problemSince = undefined;
      this.lastLoud = undefined;
      return;
    }
    if (!this.problem) this.problemSince = clock.now();
    this.problem = problem;
    this.lastError = { text: errorLine(problem.reason, problem.detail), at: clock.now() };
    if (!words) return;
    const key = `${problem.health}:${problem.reason}`;
    const now = clock.monotonic();
    if (this.lastLoud && this.lastLoud.key === key && now - this.lastLoud.at < LOUD_LOG_INTERVAL_MS) return;
    this.lastLoud = { key, at: now };
    const fields = { ...context, reason: problem.reason, detail: problem.detail, ...extra };
    if (problem.health === 'failing') logger.error(withCode('SINK_FAILING', fields), `${words.failing}: ${problem.detail}`);
    else logger.warn(withCode('SINK_DEGRADED', fields), words.degraded);
  }
}

function errorLine(reason: string, detail: string | undefined): string {
  return detail ? `${reason}: ${detail}` : reason;
}
