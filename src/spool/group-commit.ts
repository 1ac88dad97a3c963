import type { InboundMessage } from '../core/message.js';
import { SpoolClosedError, SpoolFullError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../http/metrics.js';
import type { AppendResult, Spool } from './spool.js';

interface Waiting {
  message: InboundMessage;
  resolve: (r: AppendResult) => void;
  reject: (e: Error) => void;
}

/**
 * Group commit in front of the spool: every message submitted while a commit is pending joins the same
 * transaction, so one fsync covers many messages. The group is flushed on the next turn of the event
 * loop (after the current socket chunk has been parsed), or as soon as it reaches `maxBatch`; there is
 * no timer wait, so a lone message is committed at once.
 *
 * Back-pressure (ARCHITECTURE §2.4): while the spool is full, submitted messages wait, unacknowledged,
 * and the commit is retried every `fullRetryMs`. Callers acknowledge to the broker only when their
 * promise resolves, so a full spool stops acknowledgements instead of dropping anything.
 */
export class SpoolWriter {
  private queue: Waiting[] = [];
  private scheduled = false;
  private fullTimer: NodeJS.Timeout | undefined;
  private full = false;
  private closed = false;

  constructor(
    private readonly spool: Spool,
    private readonly opts: { maxBatch?: number; fullRetryMs?: number; metrics?: Metrics; logger?: Logger } = {},
  ) {}

  submit(message: InboundMessage): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new SpoolClosedError());
    return new Promise((resolve, reject) => {
      this.queue.push({ message, resolve, reject });
      if (this.queue.length >= (this.opts.maxBatch ?? 1000) && !this.full) this.flush();
      else this.schedule();
    });
  }

  /** Messages waiting for a commit (back-pressure makes this grow only up to the clients' in-flight windows). */
  get waiting(): number {
    return this.queue.length;
  }

  get isBlocked(): boolean {
    return this.full;
  }

  private schedule(): void {
    if (this.scheduled || this.full) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.queue.length > 0 && !this.closed) {
      const group = this.queue.splice(0, this.opts.maxBatch ?? 1000);
      const started = process.hrtime.bigint();
      let results: AppendResult[];
      try {
        results = this.spool.append(group.map((w) => w.message));
      } catch (err) {
        if (err instanceof SpoolFullError) {
          this.queue.unshift(...group);
          this.enterFull(err);
          return;
        }
        for (const w of group) w.reject(err as Error);
        continue;
      }
      this.opts.metrics?.commitSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      this.leaveFull();
      let stored = 0;
      for (let i = 0; i < group.length; i++) {
        if (results[i].stored) stored += 1;
        group[i].resolve(results[i]);
      }
      this.opts.metrics?.messagesReceived.inc(stored);
      if (stored < group.length) this.opts.metrics?.duplicatesSkipped.inc(group.length - stored);
    }
  }

  private enterFull(err: SpoolFullError): void {
    if (!this.full) {
      this.full = true;
      this.opts.metrics?.spoolFull.set(1);
      this.opts.logger?.error(
        { err: { code: err.code, ...err.context }, waiting: this.queue.length },
        'spool is full: acknowledgements to the broker are paused until sinks catch up (back-pressure, nothing is dropped)',
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
    this.opts.metrics?.spoolFull.set(0);
    this.opts.logger?.warn('spool has room again: acknowledgements resumed');
  }

  /** Rejects every waiting message (they were never acknowledged, so the broker keeps them). */
  close(): void {
    this.closed = true;
    if (this.fullTimer) clearTimeout(this.fullTimer);
    const waiting = this.queue;
    this.queue = [];
    for (const w of waiting) w.reject(new SpoolClosedError());
  }

  /** Commits whatever is queued now (used at shutdown before closing, when the spool has room). */
  drain(): void {
    if (!this.full) this.flush();
  }
}
