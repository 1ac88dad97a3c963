import type { SpooledMessage } from '../core/message.js';
import { retryable, type DeliveryOutcome } from '../core/outcome.js';
import { Backoff } from '../core/backoff.js';
import type { Logger } from '../core/logger.js';
import { systemDualClock, type DualClock } from '../core/clock.js';
import { withCode } from '../core/errors.js';
import type { Metrics } from '../core/metrics.js';
import type { Sink } from '../sinks/sink.js';
import type { Spool } from '../spool/spool.js';
import type { DeadLetterInput } from '../spool/dead-letters.js';
import { SinkHealth, type SinkStatus } from './sink-health.js';
import type { RouteStage } from './route-stage.js';

/** The runner's time (ARCHITECTURE §5: passed in so tests control it): wall clock for timestamps, monotonic for deadlines. */
export type RunnerClock = DualClock;

/** Cap of the backoff between attempts to record outcomes in the spool: the spool is local, a full disk is freed by people. */
const RECORD_RETRY_CAP_MS = 5000;

/** What a write achieved that the spool still has to record: acknowledgements and dead letters. */
interface Unrecorded {
  delivered: SpooledMessage[];
  /** Done without a write (the routes: a route that does not use the sink, or drops the message): acknowledged, not counted delivered. */
  skipped: SpooledMessage[];
  dead: DeadLetterInput[];
}

/** A message's outcome at the runner: the sink's answer, or done by routing without a write. */
type RunnerOutcome = DeliveryOutcome | { kind: 'skipped' };
const SKIPPED: RunnerOutcome = Object.freeze({ kind: 'skipped' });

/** A sink's whole status in readiness (`components.sinks.<name>`): its destination's health and the runner's progress. */
export interface SinkRunnerStatus extends SinkStatus {
  inFlight: number;
  retrying: number;
  consecutiveFailures: number;
  unrecorded?: number;
}

export interface RunnerOptions {
  retryBaseMs: number;
  retryCapMs: number;
  /** Safety poll when nothing notifies (e.g. `dlq replay` from another process). */
  idlePollMs?: number;
  /** The routes (ROUTES_FILE), applied between the lease and the write; unset: every message goes to the sink. */
  routing?: RouteStage;
  /** A write pending longer than this shows the sink as degraded in readiness (default 10 s). */
  slowWriteMs?: number;
  clock?: RunnerClock;
}

/**
 * Moves one sink's share of the spool: lease a batch → write → per message ack / retry / dead-letter.
 * Up to `sink.maxInFlight` writes run at once. Messages a write left retryable are retried first, in the
 * next batch, and no new rows are leased while a whole-batch failure is backing off, so memory holds at
 * most `maxInFlight` batches whatever the backlog. Retryable failures are retried forever (with the
 * capped backoff): a sink outage of hours fills the spool and loses nothing (ARCHITECTURE §2.2).
 *
 * The runner alone keeps the sink's status (SinkHealth), from the outcomes of its writes and the condition the
 * sink reports (`Sink.watchCondition`), and logs the destination's failures and recovery in the sink's words.
 *
 * When the spool cannot record what a write achieved (a full disk: SQLITE_FULL), the outcome is kept in memory and
 * only its recording is retried, with backoff; nothing new is leased or written meanwhile. Sending the batch again
 * would only multiply deliveries (52,100 Pub/Sub messages for 4,000 were seen), and leasing more would grow memory
 * without any row leaving the spool. Memory holds at most `maxInFlight` batches' outcomes. If the process ends
 * first, the rows are still pending in the spool and are delivered again after the restart (same message_id).
 */
export class SinkRunner {
  private retryQueue: SpooledMessage[] = [];
  private inFlight = 0;
  private running = false;
  /** Monotonic deadline of a whole-batch failure's backoff. */
  private pausedUntil = Number.NEGATIVE_INFINITY;
  private wakeTimer: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  private readonly clock: RunnerClock;
  /** Outcomes the spool could not record yet, oldest first; retried after `recordPausedUntil` (monotonic). */
  private unrecorded: Unrecorded[] = [];
  private readonly recordBackoff: Backoff;
  private recordPausedUntil = Number.NEGATIVE_INFINITY;
  private recordError: string | undefined;
  private idleWaiters: (() => void)[] = [];
  private readonly health: SinkHealth;
  /** Start times (monotonic) of the writes in flight, to show a destination that hangs rather than fails. */
  private readonly writeStarts = new Map<object, number>();

  constructor(
    readonly sink: Sink,
    private readonly spool: Spool,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly opts: RunnerOptions,
  ) {
    this.backoff = new Backoff({ baseMs: opts.retryBaseMs, capMs: opts.retryCapMs });
    this.recordBackoff = new Backoff({ baseMs: opts.retryBaseMs, capMs: Math.min(opts.retryCapMs, RECORD_RETRY_CAP_MS) });
    this.clock = opts.clock ?? systemDualClock;
    this.health = new SinkHealth({ sink: sink.name, describe: sink.describe, logger, clock: this.clock });
    sink.watchCondition?.((condition) => this.health.condition(condition));
    this.metrics.sinkUp.set({ sink: sink.name }, 1);
  }

  start(): void {
    this.running = true;
    this.pump();
  }

  /** New rows were committed: fill free write slots now. */
  notify(): void {
    if (this.running) this.pump();
  }

  /**
   * Stops leasing; resolves when in-flight writes have finished or `timeoutMs` has passed. Outcomes not yet
   * recorded get one more attempt; rows whose outcome is still unrecorded are delivered again after the restart.
   */
  async stop(timeoutMs: number): Promise<boolean> {
    this.running = false;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    const finished =
      this.inFlight === 0 ||
      (await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        this.idleWaiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      }));
    if (this.unrecorded.length > 0 && !this.spool.isClosed && !this.recordOutcomes()) {
      this.logger.warn(
        withCode('SPOOL_ACK_FAILED', { sink: this.sink.name, messages: this.unrecordedCount(), err: this.recordError }),
        'delivered messages could not be recorded in the spool before the stop; they stay pending and are sent again after the restart (same message_id)',
      );
    }
    return finished;
  }

  status(): SinkRunnerStatus {
    const own = this.health.status();
    const failing = this.backoff.failures > 0;
    const oldestWrite = Math.min(...this.writeStarts.values());
    const slowMs = Number.isFinite(oldestWrite) ? this.clock.monotonic() - oldestWrite : 0;
    const slow = slowMs > (this.opts.slowWriteMs ?? 10_000);
    const unrecorded = this.unrecordedCount();
    const detail =
      unrecorded > 0
        ? `${unrecorded} delivered or rejected messages wait to be recorded in the spool (${this.recordError ?? 'retrying'}); nothing new is sent meanwhile`
        : slow
          ? `a write has been waiting for ${Math.round(slowMs / 1000)} s`
          : own.detail;
    const state = own.state !== 'ok' ? own.state : failing || slow || unrecorded > 0 ? 'degraded' : 'ok';
    return {
      ...own,
      state,
      // The reason goes with the detail shown: the runner's own condition first, as above.
      reason: state === 'ok' ? undefined : unrecorded > 0 ? 'spool_ack_failed' : slow ? 'slow_write' : own.reason,
      detail,
      inFlight: this.inFlight,
      retrying: this.retryQueue.length,
      consecutiveFailures: this.backoff.failures,
      unrecorded: unrecorded > 0 ? unrecorded : undefined,
    };
  }

  private unrecordedCount(): number {
    let n = 0;
    for (const u of this.unrecorded) n += u.delivered.length + u.skipped.length + u.dead.length;
    return n;
  }

  private pump(): void {
    while (this.running && this.inFlight < this.sink.maxInFlight) {
      if (this.unrecorded.length > 0) {
        // Record what was achieved before anything new is written, so that delivered messages are not sent again.
        const wait = this.recordPausedUntil - this.clock.monotonic();
        if (wait > 0 || !this.recordOutcomes()) {
          this.wakeAt(Math.max(1, this.recordPausedUntil - this.clock.monotonic()));
          return;
        }
      }
      const now = this.clock.monotonic();
      if (now < this.pausedUntil) {
        this.wakeAt(this.pausedUntil - now);
        return;
      }
      let batch: SpooledMessage[];
      try {
        batch = this.nextBatch();
      } catch (err) {
        // The spool could not be read (disk error, a lock held too long by a dlq command): try later.
        this.spoolError('lease', err);
        this.wakeAt(1000);
        return;
      }
      if (batch.length === 0) {
        this.wakeAt(this.opts.idlePollMs ?? 1000);
        return;
      }
      this.inFlight += 1;
      void this.writeBatch(batch).finally(() => {
        this.inFlight -= 1;
        if (this.inFlight === 0 && this.idleWaiters.length) for (const w of this.idleWaiters.splice(0)) w();
        this.pump();
      });
    }
  }

  private nextBatch(): SpooledMessage[] {
    const max = this.sink.maxBatchMessages;
    const batch = this.retryQueue.splice(0, max);
    // Messages the routes held (Sparkplug data waiting for a birth) come back first when they are due.
    if (this.opts.routing && batch.length < max) {
      const due = this.opts.routing.takeDue();
      const room = max - batch.length;
      batch.push(...due.slice(0, room));
      this.retryQueue.push(...due.slice(room));
    }
    // While a whole-batch failure is backing off, retries go alone: leasing more would only grow memory.
    if (batch.length < max && this.backoff.failures === 0) {
      const bytes = batch.reduce((n, m) => n + m.payload.length, 0);
      const room = this.sink.maxBatchBytes - bytes;
      if (batch.length === 0 || room > 0) batch.push(...this.spool.lease(this.sink.name, max - batch.length, Math.max(room, 1)));
    }
    return batch;
  }

  private wakeAt(ms: number): void {
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.pump();
    }, ms);
    this.wakeTimer.unref();
  }

  private async writeBatch(batch: SpooledMessage[]): Promise<void> {
    const routed = this.opts.routing?.split(batch);
    const send = routed ? routed.send : batch;
    let answers: DeliveryOutcome[] = [];
    if (send.length > 0) {
      const token = {};
      const started = this.clock.monotonic();
      this.writeStarts.set(token, started);
      try {
        answers = await this.sink.write(send);
        if (answers.length !== send.length) {
          throw new Error(`sink ${this.sink.name} answered ${answers.length} outcomes for ${send.length} messages`);
        }
      } catch (err) {
        const failure = retryable('error', err instanceof Error ? err.message : String(err), 'degraded');
        answers = send.map(() => failure);
      } finally {
        this.metrics.sinkWriteSeconds.observe({ sink: this.sink.name }, (this.clock.monotonic() - started) / 1000);
        this.writeStarts.delete(token);
      }
      this.health.wrote(answers);
    }
    if (routed && routed.failed.size > 0) this.health.wrote([...routed.failed.values()]);
    if (this.spool.isClosed) return;
    if (!routed) {
      this.apply(batch, answers, answers.length);
      return;
    }
    // Held messages (routed.parked) are neither done nor retried here: the route stage gives them back when due.
    const outcomes: (RunnerOutcome | undefined)[] = new Array(batch.length).fill(undefined);
    routed.sendIndex.forEach((index, j) => (outcomes[index] = answers[j]!));
    for (const index of routed.skipped) outcomes[index] = SKIPPED;
    for (const [index, o] of routed.dead) outcomes[index] = o;
    for (const [index, o] of routed.failed) outcomes[index] = o;
    const kept = batch.filter((_, i) => outcomes[i] !== undefined);
    // A routing failure counts as a failed write: when nothing else went through, the runner backs off.
    this.apply(kept, outcomes.filter((o): o is RunnerOutcome => o !== undefined), send.length + routed.failed.size);
  }

  private spoolError(what: string, err: unknown): void {
    this.metrics.deliveryFailures.inc({ sink: this.sink.name, reason: `spool_${what}_failed` });
    const fields = { sink: this.sink.name, err: err instanceof Error ? err.message : String(err) };
    this.logger.error(withCode('SPOOL_READ_FAILED', fields), `spool ${what} failed; retrying`);
  }

  /** `written`: how many of the batch went to the sink (the rest were done by routing). */
  private apply(batch: SpooledMessage[], outcomes: RunnerOutcome[], written: number): void {
    const delivered: SpooledMessage[] = [];
    const skipped: SpooledMessage[] = [];
    const dead: DeadLetterInput[] = [];
    const retry: SpooledMessage[] = [];
    let firstRetry: RunnerOutcome | undefined;
    outcomes.forEach((o, i) => {
      if (o.kind === 'delivered') delivered.push(batch[i]);
      else if (o.kind === 'skipped') skipped.push(batch[i]);
      else if (o.kind === 'rejected') dead.push({ message: batch[i], reason: o.reason, detail: o.detail });
      else {
        retry.push(batch[i]);
        firstRetry ??= o;
        this.metrics.deliveryFailures.inc({ sink: this.sink.name, reason: o.reason });
      }
    });
    if (delivered.length > 0 || skipped.length > 0 || dead.length > 0) {
      this.unrecorded.push({ delivered, skipped, dead });
      // While earlier outcomes wait for their backoff, this one joins them (recorded in order, with them).
      if (this.clock.monotonic() >= this.recordPausedUntil) this.recordOutcomes();
    }
    this.retryQueue.push(...retry);
    if (written > 0 && retry.length === written && firstRetry?.kind === 'retryable') {
      // Nothing the sink was given went through: the destination (not one message) is the problem. Back off before retrying.
      const delay = this.backoff.next();
      this.pausedUntil = this.clock.monotonic() + delay;
      this.metrics.sinkUp.set({ sink: this.sink.name }, 0);
      const log = this.backoff.failures === 1 || this.backoff.failures % 10 === 0 ? 'warn' : 'debug';
      this.logger[log](
        withCode('SINK_BACKING_OFF', { sink: this.sink.name, reason: firstRetry.reason, detail: firstRetry.detail, messages: batch.length, retryInMs: delay, failures: this.backoff.failures }),
        'sink write failed; retrying with backoff',
      );
    } else if (delivered.length > 0 || dead.length > 0) {
      if (this.backoff.failures > 0) this.logger.info(withCode('SINK_RECOVERED', { sink: this.sink.name, after: this.backoff.failures }), 'sink recovered');
      this.backoff.reset();
      this.pausedUntil = Number.NEGATIVE_INFINITY;
      this.metrics.sinkUp.set({ sink: this.sink.name }, 1);
    }
  }

  /**
   * Records the outcomes waiting in `unrecorded` in the spool, oldest first: acknowledgements, then dead letters.
   * Metrics and logs follow the recording, so a message is counted delivered once however often recording is
   * tried. On failure (SQLITE_FULL on a full disk, a lock held too long) the rest waits for the next attempt,
   * after a backoff; true when nothing is left.
   */
  private recordOutcomes(): boolean {
    const sink = this.sink.name;
    while (this.unrecorded.length > 0) {
      const u = this.unrecorded[0];
      try {
        if (u.delivered.length > 0 || u.skipped.length > 0) {
          this.spool.ack(sink, u.skipped.length === 0 ? u.delivered : [...u.delivered, ...u.skipped]);
          if (u.delivered.length > 0) this.metrics.messagesDelivered.inc({ sink }, u.delivered.length);
          this.opts.routing?.recorded(u.delivered, []);
          this.opts.routing?.recorded(u.skipped, []);
          u.delivered = [];
          u.skipped = [];
        }
        if (u.dead.length > 0) {
          this.spool.deadLetter(sink, u.dead);
          this.opts.routing?.recorded([], u.dead);
          for (const d of u.dead) {
            this.metrics.deadLetters.inc({ sink, reason: d.reason });
            this.logger.warn(
              withCode('MESSAGE_DEAD_LETTERED', { sink, reason: d.reason, detail: d.detail, message_id: d.message.messageId, topic: d.message.topic }),
              'message dead-lettered',
            );
          }
          u.dead = [];
        }
      } catch (err) {
        const delay = this.recordBackoff.next();
        this.recordPausedUntil = this.clock.monotonic() + delay;
        this.recordError = err instanceof Error ? err.message : String(err);
        this.metrics.deliveryFailures.inc({ sink, reason: 'spool_ack_failed' });
        const log = this.recordBackoff.failures === 1 || this.recordBackoff.failures % 10 === 0 ? 'error' : 'debug';
        this.logger[log](
          withCode('SPOOL_ACK_FAILED', { sink, err: this.recordError, messages: this.unrecordedCount(), retryInMs: delay, failures: this.recordBackoff.failures }),
          'spool ack failed: delivered messages could not be recorded; retrying the recording with backoff (they are not sent again, nothing new is sent meanwhile)',
        );
        return false;
      }
      this.unrecorded.shift();
    }
    if (this.recordBackoff.failures > 0) {
      this.logger.info(withCode('SPOOL_ACK_RECOVERED', { sink, after: this.recordBackoff.failures }), 'spool records deliveries again');
      this.recordBackoff.reset();
      this.recordError = undefined;
      this.recordPausedUntil = Number.NEGATIVE_INFINITY;
    }
    return true;
  }
}
