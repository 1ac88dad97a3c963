import type { SpooledMessage } from '../core/message.js';
import type { DeliveryOutcome } from '../core/outcome.js';
import { Backoff } from '../core/backoff.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../http/metrics.js';
import type { Sink, SinkStatus } from '../sinks/sink.js';
import type { Spool } from '../spool/spool.js';

export interface RunnerOptions {
  retryBaseMs: number;
  retryCapMs: number;
  /** Safety poll when nothing notifies (e.g. `dlq replay` from another process). */
  idlePollMs?: number;
  /** A write pending longer than this shows the sink as degraded in readiness (default 10 s). */
  slowWriteMs?: number;
}

/**
 * Moves one sink's share of the spool: lease a batch → write → per message ack / retry / dead-letter.
 * Up to `sink.maxInFlight` writes run at once. Messages a write left retryable are retried first, in the
 * next batch, and no new rows are leased while a whole-batch failure is backing off, so memory holds at
 * most `maxInFlight` batches whatever the backlog. Retryable failures are retried forever (with the
 * capped backoff): a sink outage of hours fills the spool and loses nothing (ARCHITECTURE §2.2).
 */
export class SinkRunner {
  private retryQueue: SpooledMessage[] = [];
  private inFlight = 0;
  private running = false;
  private pausedUntil = 0;
  private wakeTimer: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  private idleWaiters: (() => void)[] = [];
  private lastError: { reason: string; detail?: string; at: number } | undefined;
  private lastDeliveryAt: number | undefined;
  /** Start times of the writes in flight, to show a destination that hangs rather than fails. */
  private readonly writeStarts = new Map<object, number>();

  constructor(
    readonly sink: Sink,
    private readonly spool: Spool,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly opts: RunnerOptions,
  ) {
    this.backoff = new Backoff({ baseMs: opts.retryBaseMs, capMs: opts.retryCapMs });
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

  /** Stops leasing; resolves when in-flight writes have finished or `timeoutMs` has passed. */
  async stop(timeoutMs: number): Promise<boolean> {
    this.running = false;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    if (this.inFlight === 0) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  status(): SinkStatus & { inFlight: number; retrying: number; consecutiveFailures: number } {
    const own = this.sink.status();
    const failing = this.backoff.failures > 0;
    const oldestWrite = Math.min(...this.writeStarts.values());
    const slowMs = Number.isFinite(oldestWrite) ? Date.now() - oldestWrite : 0;
    const slow = slowMs > (this.opts.slowWriteMs ?? 10_000);
    return {
      ...own,
      state: own.state !== 'ok' ? own.state : failing || slow ? 'degraded' : 'ok',
      detail: slow ? `a write has been waiting for ${Math.round(slowMs / 1000)} s` : own.detail,
      lastError: own.lastError ?? this.lastError?.detail ?? this.lastError?.reason,
      lastErrorAt: own.lastErrorAt ?? (this.lastError ? new Date(this.lastError.at).toISOString() : undefined),
      lastDeliveryAt: own.lastDeliveryAt ?? (this.lastDeliveryAt ? new Date(this.lastDeliveryAt).toISOString() : undefined),
      inFlight: this.inFlight,
      retrying: this.retryQueue.length,
      consecutiveFailures: this.backoff.failures,
    };
  }

  private pump(): void {
    while (this.running && this.inFlight < this.sink.maxInFlight) {
      const now = Date.now();
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
    const sinkLabel = { sink: this.sink.name };
    const end = this.metrics.sinkWriteSeconds.startTimer(sinkLabel);
    const token = {};
    this.writeStarts.set(token, Date.now());
    let outcomes: DeliveryOutcome[];
    try {
      outcomes = await this.sink.write(batch);
      if (outcomes.length !== batch.length) {
        throw new Error(`sink ${this.sink.name} answered ${outcomes.length} outcomes for ${batch.length} messages`);
      }
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      outcomes = batch.map(() => ({ kind: 'retryable', reason: 'error', detail }));
    } finally {
      end();
      this.writeStarts.delete(token);
    }
    if (this.spool.isClosed) return;
    try {
      this.apply(batch, outcomes);
    } catch (err) {
      // The outcome could not be recorded: nothing left the spool, so the whole batch is sent again later
      // (the destination de-duplicates by message_id).
      this.spoolError('ack', err);
      this.retryQueue.push(...batch);
      this.pausedUntil = Date.now() + this.backoff.next();
    }
  }

  private spoolError(what: string, err: unknown): void {
    this.metrics.deliveryFailures.inc({ sink: this.sink.name, reason: `spool_${what}_failed` });
    this.logger.error({ sink: this.sink.name, err: err instanceof Error ? err.message : String(err) }, `spool ${what} failed; retrying`);
  }

  private apply(batch: SpooledMessage[], outcomes: DeliveryOutcome[]): void {
    const delivered: SpooledMessage[] = [];
    const dead: { message: SpooledMessage; reason: string; detail: string }[] = [];
    const retry: SpooledMessage[] = [];
    let firstRetry: DeliveryOutcome | undefined;
    outcomes.forEach((o, i) => {
      if (o.kind === 'delivered') delivered.push(batch[i]);
      else if (o.kind === 'rejected') dead.push({ message: batch[i], reason: o.reason, detail: o.detail });
      else {
        retry.push(batch[i]);
        firstRetry ??= o;
        this.metrics.deliveryFailures.inc({ sink: this.sink.name, reason: o.reason });
      }
    });
    this.spool.ack(this.sink.name, delivered);
    this.spool.deadLetter(this.sink.name, dead);
    this.metrics.messagesDelivered.inc({ sink: this.sink.name }, delivered.length);
    for (const d of dead) {
      this.metrics.deadLetters.inc({ sink: this.sink.name, reason: d.reason });
      this.logger.warn(
        { sink: this.sink.name, reason: d.reason, detail: d.detail, message_id: d.message.messageId, topic: d.message.topic },
        'message dead-lettered',
      );
    }
    if (delivered.length > 0 || dead.length > 0) this.lastDeliveryAt = Date.now();
    this.retryQueue.push(...retry);
    if (retry.length === batch.length && firstRetry?.kind === 'retryable') {
      // Nothing went through: the destination (not one message) is the problem. Back off before retrying.
      const delay = this.backoff.next();
      this.pausedUntil = Date.now() + delay;
      this.lastError = { reason: firstRetry.reason, detail: firstRetry.detail, at: Date.now() };
      this.metrics.sinkUp.set({ sink: this.sink.name }, 0);
      const log = this.backoff.failures === 1 || this.backoff.failures % 10 === 0 ? 'warn' : 'debug';
      this.logger[log](
        { sink: this.sink.name, reason: firstRetry.reason, detail: firstRetry.detail, messages: batch.length, retryInMs: delay, failures: this.backoff.failures },
        'sink write failed; retrying with backoff',
      );
    } else if (delivered.length > 0 || dead.length > 0) {
      if (this.backoff.failures > 0) this.logger.info({ sink: this.sink.name, after: this.backoff.failures }, 'sink recovered');
      this.backoff.reset();
      this.pausedUntil = 0;
      this.metrics.sinkUp.set({ sink: this.sink.name }, 1);
    }
  }
}
