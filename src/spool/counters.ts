import type Database from 'better-sqlite3';
import type { SinkName } from '../core/message.js';

/**
 * How a transaction changes the in-memory counters, applied only once it has committed. `recount`: the rows
 * were not as expected (acknowledged twice), so everything is counted again from the database instead.
 */
export interface CounterDelta {
  messages: number;
  bytes: number;
  pending: number;
  deadLetters: number;
  recount: boolean;
}

export const RECOUNT: CounterDelta = Object.freeze({ messages: 0, bytes: 0, pending: 0, deadLetters: 0, recount: true });

/**
 * The spool's message, byte, pending and dead-letter counts (metrics, SPOOL_MAX_BYTES), kept in memory so that
 * no commit or acknowledgement counts rows. They follow commits only (invariant 6 in spool.ts).
 */
export class SpoolCounters {
  messages = 0;
  /** Messages and dead letters, as charged against SPOOL_MAX_BYTES. */
  bytes = 0;
  deadLetters = 0;
  /** Rows still pending per routed sink. */
  readonly pending = new Map<SinkName, number>();
  private dataVersion = -1;

  constructor(
    private readonly db: Database.Database,
    private readonly messageStore: { totals(): { messages: number; bytes: number }; pendingCount(sink: SinkName): number },
    private readonly deadLetterStore: { count(): number; totalBytes(): number },
    private readonly sinks: readonly SinkName[],
  ) {}

  /**
   * Counts everything again from the database. PRAGMA data_version changes only when another connection (a dlq
   * command) committed: recounting scans the whole spool, so unless `force`d it is skipped when this process
   * made every change itself.
   */
  recount(force: boolean): void {
    const version = this.db.pragma('data_version', { simple: true }) as number;
    if (!force && version === this.dataVersion) return;
    this.dataVersion = version;
    this.deadLetters = this.deadLetterStore.count();
    const totals = this.messageStore.totals();
    this.messages = totals.messages;
    this.bytes = totals.bytes + this.deadLetterStore.totalBytes();
    for (const sink of this.sinks) this.pending.set(sink, this.messageStore.pendingCount(sink));
  }

  /** A committed acknowledgement or dead-lettering for `sink` (a delta without `recount`). */
  apply(sink: SinkName, d: CounterDelta): void {
    const pending = this.pending.get(sink);
    if (pending !== undefined) this.pending.set(sink, pending - d.pending);
    this.messages -= d.messages;
    this.bytes += d.bytes;
    this.deadLetters += d.deadLetters;
  }

  /** A committed append of `added` rows, pending for every routed sink. */
  appended(added: number, bytes: number): void {
    this.messages += added;
    this.bytes += bytes;
    for (const s of this.sinks) this.pending.set(s, (this.pending.get(s) ?? 0) + added);
  }

  pendingBySink(): Record<string, number> {
    const pending: Record<string, number> = {};
    for (const [sink, n] of this.pending) pending[sink] = n;
    return pending;
  }
}
