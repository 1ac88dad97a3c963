import { SpoolClosedError, SpoolFullError, withCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { AppendResult, SourcedMessage, Spool } from './spool.js';

/** Messages submitted together (one socket read, or one publisher's packet) and their one promise. */
interface Waiting {
  messages: SourcedMessage[];
  bytes: number;
  resolve: (r: AppendResult[]) => void;
  reject: (e: Error) => void;
}

/**
 * Group commit in front of the spool: every message submitted while a commit is pending joins the same
 * transaction, so one fsync covers many messages. The group is flushed on the next turn of the event
 * loop (after the current socket chunk has been parsed), or as soon as it reaches `maxBatch`; there is
 * no timer wait, so a lone message is committed at once. Callers may submit a whole socket read at once
 * (`submitMany`): one promise per read instead of one per message keeps the garbage collector's share low.
 *
 * Back-pressure (ARCHITECTURE §2.4): while the spool is full, submitted messages wait, unacknowledged,
 * and the commit is retried every `fullRetryMs`. Callers acknowledge to the broker only when their
 * promise resolves, so a full spool stops acknowledgements instead of dropping anything.
 */
export class SpoolWriter {
  private queue: Waiting[] = [];
  private queuedMessages = 0;
  private queuedBytes = 0;
  private scheduled = false;
  private fullTimer: NodeJS.Timeout | undefined;
  private full = false;
  /** The cause last logged while full ('disk' or 'SPOOL_MAX_BYTES'): a change of cause is logged too. */
  private fullCause: string | undefined;
  private closed = false;

  constructor(
    private readonly spool: Spool,
    private readonly opts: { maxBatch?: number; fullRetryMs?: number; metrics?: Metrics; logger?: Logger } = {},
  ) {}

  submit(message: SourcedMessage): Promise<AppendResult> {
    return this.submitMany([message]).then((r) => r[0]);
  }

  /**
   * A subscriber connection begins: the epoch its QoS 1/2 messages carry, so that the spool compares a
   * redelivery only with what the connection before it committed (inbound-window.ts).
   */
  beginConnection(window?: number): number {
    return this.spool.beginInboundConnection(window);
  }

  /** The connection `epoch` has closed, with PUBACKs written up to position `acksWrittenUpTo`. */
  endConnection(epoch: number, acksWrittenUpTo: number): void {
    this.spool.endInboundConnection(epoch, acksWrittenUpTo);
  }

  /** Commits the messages (possibly with others) and resolves with one result each, in order. */
  submitMany(messages: SourcedMessage[]): Promise<AppendResult[]> {
    if (this.closed) return Promise.reject(new SpoolClosedError());
    return new Promise((resolve, reject) => {
      const bytes = messages.reduce((n, m) => n + m.payload.length, 0);
      this.queue.push({ messages, bytes, resolve, reject });
      this.queuedMessages += messages.length;
      this.queuedBytes += bytes;
      if (this.queuedMessages >= this.maxBatch && !this.full) this.flush();
      else this.schedule();
    });
  }

  private get maxBatch(): number {
    return this.opts.maxBatch ?? 1000;
  }

  /** Messages waiting for a commit (back-pressure makes this grow only up to the clients' in-flight windows). */
  get waiting(): number {
    return this.queuedMessages;
  }

  /** True while the spool is full and commits wait (back-pressure). */
  get isBlocked(): boolean {
    return this.full;
  }

  /**
   * A message submitted now would wait for room: commits wait, or SPOOL_MAX_BYTES is reached already (before any
   * commit found out). A full disk shows once a commit has met it.
   */
  get wouldWait(): boolean {
    return this.full || this.spool.maxBytesReason() !== undefined;
  }

  /** Payload bytes waiting for a commit. */
  get waitingBytes(): number {
    return this.queuedBytes;
  }

  private schedule(): void {
    if (this.scheduled || this.full) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  /** Takes whole submissions from the queue until the group holds at least maxBatch messages. */
  private takeGroup(): Waiting[] {
    let n = 0;
    let i = 0;
    while (i < this.queue.length && (n === 0 || n + this.queue[i].messages.length <= this.maxBatch)) {
      n += this.queue[i].messages.length;
      i += 1;
    }
    return this.queue.splice(0, i);
  }

  private flush(): void {
    while (this.queue.length > 0 && !this.closed) {
      const group = this.takeGroup();
      const messages = group.length === 1 ? group[0].messages : group.flatMap((w) => w.messages);
      const started = process.hrtime.bigint();
      let results: AppendResult[];
      try {
        results = this.spool.append(messages);
      } catch (err) {
        if (err instanceof SpoolFullError) {
          this.queue.unshift(...group);
          this.enterFull(err);
          return;
        }
        this.dequeued(group);
        for (const w of group) w.reject(err as Error);
        continue;
      }
      this.dequeued(group);
      this.opts.metrics?.commitSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      this.leaveFull();
      let at = 0;
      let stored = 0;
      for (const w of group) {
        const mine = group.length === 1 ? results : results.slice(at, at + w.messages.length);
        at += w.messages.length;
        for (const r of mine) if (r.stored) stored += 1;
        w.resolve(mine);
      }
      this.opts.metrics?.messagesReceived.inc(stored);
      if (stored < messages.length) this.opts.metrics?.duplicatesSkipped.inc(messages.length - stored);
    }
  }

  private dequeued(group: Waiting[]): void {
    for (const w of group) {
      this.queuedMessages -= w.messages.length;
      this.queuedBytes -= w.bytes;
    }
  }

  /**
   * Says why in the log: a full disk is not the sinks' fault, and the operator's remedy differs (free disk or lower
   * SPOOL_MIN_FREE_BYTES, against waiting for the sinks or raising SPOOL_MAX_BYTES).
   */
  private enterFull(err: SpoolFullError): void {
    const reason = typeof err.context.reason === 'string' ? err.context.reason : err.message;
    const cause = reason.startsWith('disk') ? 'disk' : 'SPOOL_MAX_BYTES';
    if (!this.full || cause !== this.fullCause) {
      this.full = true;
      this.fullCause = cause;
      this.opts.metrics?.spoolFull.set(1);
      const until = cause === 'disk' ? 'until the disk has room again' : 'until the sinks deliver part of the backlog';
      this.opts.logger?.error(
        withCode('SPOOL_FULL', { err: { code: err.code, ...err.context }, reason, waiting: this.queuedMessages }),
        `spool is full (${reason}): acknowledgements to the broker are paused ${until} (back-pressure, nothing is dropped)`,
      );
    }
    this.fullTimer = setTimeout(() => {
      this.fullTimer = undefined;
      this.flush();
    }, this.opts.fullRetryMs ?? 500);
  }

  private leaveFull(): void {
    if (!this.full) return;
    this.full = false;
    this.fullCause = undefined;
    this.opts.metrics?.spoolFull.set(0);
    this.opts.logger?.warn(withCode('SPOOL_ROOM_AGAIN'), 'spool has room again: acknowledgements resumed');
  }

  /** Rejects every waiting message (they were never acknowledged, so the broker keeps them). */
  close(): void {
    this.closed = true;
    if (this.fullTimer) clearTimeout(this.fullTimer);
    const waiting = this.queue;
    this.queue = [];
    this.queuedMessages = 0;
    this.queuedBytes = 0;
    for (const w of waiting) w.reject(new SpoolClosedError());
  }
}
