/**
 * The spool: the node's durable store between the broker and the sinks (SQLite in WAL mode).
 *
 * Invariants (ARCHITECTURE §2; each has a test in spool.test.ts or test/):
 * 1. Ack after commit. `append` returns only after the transaction holding the messages is committed;
 *    callers acknowledge to the broker after that, never before. WAL + synchronous=FULL (default) makes
 *    the commit survive SIGKILL and power loss; `normal` survives SIGKILL of the process only.
 * 2. Leave only when done. A row carries a bit per routed sink; `ack` and `deadLetter` clear one sink's
 *    bit, and the row is deleted in the same transaction only when no bit is left. Nothing else deletes.
 * 3. One identity. `message_id` (a ULID: time-sortable, unique) is assigned once, at commit, and every
 *    sink uses it. A DUP redelivery is acknowledged without being stored again only when it is certainly
 *    a message the previous connection committed (inbound-window.ts); anything less certain is stored.
 * 4. Nothing silent. A full spool raises SpoolFullError naming the cause (SPOOL_MAX_BYTES, or the disk:
 *    disk-space.ts); the caller stops acknowledging (back-pressure), nothing is dropped. Dead letters keep the
 *    whole message, the sink and the reason.
 * 5. Damage is seen. A spool that holds less than was committed (lost or truncated WAL, emptied or replaced
 *    spool.db) is refused at open (commit-record.ts, SpoolDamagedError); a row whose bytes no longer match
 *    the checksum written at commit is dead-lettered (`corrupt`) when leased, never delivered.
 *
 * 6. Counters follow commits. The in-memory message, byte and pending counts (metrics, SPOOL_MAX_BYTES) change
 *    only after the transaction that changed the rows has committed: a commit that fails (SQLITE_FULL on a full
 *    disk) rolls back the rows and leaves the counts as they were, however often it is retried.
 *
 * Leases are in memory: each sink has a cursor (highest seq handed out). After a crash every pending
 * row is leased again from the start, so delivery is at least once and sinks de-duplicate by message_id.
 *
 * Spool ties together: spool-file.ts (open, the commit-record check, migration), append.ts (a group's
 * transaction), message-store.ts (the statements on `messages`, columns.ts its rows), counters.ts,
 * writes.ts (fsync of acknowledgements, giving pages back), dead-letters.ts and inbound-window.ts.
 */
import type Database from 'better-sqlite3';
import type { SinkName, SpooledMessage } from '../core/message.js';
import { SpoolClosedError, type ErrorCode } from '../core/errors.js';
import { monotonicMs, systemClock, type Clock } from '../core/clock.js';
import { messageBytes, SINK_BITS } from './schema.js';
import { DeadLetterStore, type DeadLetterInput } from './dead-letters.js';
import { InboundWindow } from './inbound-window.js';
import { commitBytes, GroupAppend, spoolFullError, type Appended, type AppendResult, type SourcedMessage } from './append.js';
import type { CommitRecordFile } from './commit-record.js';
import { formatBytes, type DiskSpace } from './disk-space.js';
import { openSpoolFile } from './spool-file.js';
import { SpoolCounters, type CounterDelta } from './counters.js';
import { MessageStore, type AckedMessage } from './message-store.js';
import { SpoolWrites } from './writes.js';
import { RecentRows } from './recent-rows.js';
import { spooledOf } from './columns.js';
import type { SpoolOptions, SpoolStats } from './spool-options.js';

/**
 * Memory for the rows committed last (recent-rows.ts): 32 MiB holds about 80,000 messages of 200 bytes, several
 * seconds of a live stream for a sink that lags; one further behind reads SQLite until it catches up.
 */
const RECENT_ROWS_BYTES = 32 * 1024 * 1024;

export { messageBytes };
export type { AckedMessage, AppendResult, SourcedMessage, SpoolOptions, SpoolStats };

export class Spool {
  readonly db: Database.Database;
  readonly deadLetters: DeadLetterStore;
  private readonly window: InboundWindow;
  readonly path: string;
  private readonly clock: Clock;
  private readonly monotonic: () => number;
  private readonly disk: DiskSpace;
  private readonly routeMask: number;
  private readonly rows: MessageStore;
  private readonly counters: SpoolCounters;
  private readonly group: GroupAppend;
  private readonly writes: SpoolWrites;
  private readonly cursors = new Map<SinkName, number>();
  /** The rows committed last, for leases that keep up with them (recent-rows.ts). */
  private readonly recent = new RecentRows(RECENT_ROWS_BYTES);
  private closed = false;
  private readonly record: CommitRecordFile;
  /**
   * What the node should log at start, each with its code: a spool started although damaged (acceptLoss), a
   * missing commit record (the completeness of this start could not be checked), a disk too small for
   * SPOOL_MIN_FREE_BYTES, a spool already full.
   */
  readonly openWarnings: { code: ErrorCode; message: string }[];
  /** What the node should log at start as information (an old spool.db switched to giving space back). */
  readonly openNotes: string[] = [];

  static open(options: SpoolOptions): Spool {
    return new Spool(options);
  }

  private constructor(private readonly options: SpoolOptions) {
    this.clock = options.clock ?? systemClock;
    this.monotonic = options.monotonic ?? monotonicMs;
    const file = openSpoolFile(options, this.monotonic);
    this.db = file.db;
    this.path = file.path;
    this.record = file.record;
    this.disk = file.disk;
    this.openWarnings = file.warnings;
    this.writes = new SpoolWrites(this.db, this.disk, options.sync, options.onNote);
    this.routeMask = options.sinks.reduce((mask, s) => mask | SINK_BITS[s], 0);
    this.rows = new MessageStore(this.db, this.routeMask, this.path);
    this.deadLetters = new DeadLetterStore(this.db, this.clock);
    this.counters = new SpoolCounters(this.db, this.rows, this.deadLetters, options.sinks);
    this.window = new InboundWindow(this.db);
    this.group = new GroupAppend(this.db, this.window, this.rows);
    this.releaseUnroutedSinks();
    for (const sink of this.options.sinks) this.cursors.set(sink, 0);
    this.refreshCounters();
    const switched = this.disk.reclaim(true);
    if (switched) this.openNotes.push(switched);
    else if (!this.disk.givesSpaceBack) {
      this.openNotes.push(
        `${this.path} was created without incremental vacuum: its free pages are reused, and it is switched to giving ` +
          'space back to the file system once its backlog has drained',
      );
    }
    this.openWarnings.push(...this.disk.openWarnings());
    const full = this.fullReason();
    if (full) {
      this.openWarnings.push({ code: 'SPOOL_FULL_AT_START', message: `the spool is full at start (${full}): messages are not acknowledged until there is room` });
    }
  }

  /**
   * Rows still pending for a sink that is no longer configured would never leave. They are moved to the
   * dead-letter store (reason `sink_disabled`), where `dlq replay` can bring them back, instead of being
   * dropped or held forever.
   */
  private releaseUnroutedSinks(): void {
    for (const [sink, bit] of Object.entries(SINK_BITS) as [SinkName, number][]) {
      if (this.routeMask & bit) continue;
      for (;;) {
        // In chunks: a backlog of gigabytes must not be loaded into memory at once.
        const rows = this.rows.pendingFor(sink, 5000);
        if (rows.length === 0) break;
        this.deadLetterNow(
          sink,
          rows.map((message) => ({ message, reason: 'sink_disabled', detail: `sink ${sink} is no longer configured` })),
        );
        this.releasedAtOpen[sink] = (this.releasedAtOpen[sink] ?? 0) + rows.length;
      }
    }
  }

  /**
   * Messages moved to the dead-letter store at open because their sink is no longer configured, per sink;
   * the node counts them in the dead-letter metric and logs them (nothing leaves silently).
   */
  readonly releasedAtOpen: Partial<Record<SinkName, number>> = {};

  /**
   * Recounts messages, bytes and per-sink pending rows from the database. Runs at open and periodically,
   * because the `dlq` commands change the same file from another process while the node runs.
   */
  refreshCounters(force = false): void {
    if (this.closed) return;
    // With no sink routed (spool-and-count mode) rows are done at once: sweep them so the spool stays small.
    if (this.routeMask === 0 && this.rows.sweepDone() > 0) {
      force = true;
      this.writes.reclaim();
    }
    this.counters.recount(force);
  }

  get routedSinks(): readonly SinkName[] {
    return this.options.sinks;
  }

  /** True when SPOOL_MAX_BYTES is reached or the disk has no room: the source must stop acknowledging. */
  isFull(): boolean {
    return this.fullReason() !== undefined;
  }

  /** Why the spool cannot take messages now, in plain words (log, readiness), or undefined when it can. */
  fullReason(): string | undefined {
    return this.maxBytesReason() ?? this.disk.reason();
  }

  /** SPOOL_MAX_BYTES reached (a counter comparison, cheap enough for every publish; isFull also asks the disk). */
  maxBytesReason(): string | undefined {
    const bytes = this.counters.bytes;
    if (bytes < this.options.maxBytes) return undefined;
    return `SPOOL_MAX_BYTES reached: ${formatBytes(bytes)} of messages and dead letters held, limit ${formatBytes(this.options.maxBytes)}`;
  }

  /**
   * Commits the messages in one transaction and returns one result per message, in order.
   * Throws SpoolFullError (nothing stored) when the spool is full, SpoolClosedError after close().
   * The disk's room is checked before every commit, with the commit's own size: a burst cannot outrun it.
   */
  append(messages: readonly SourcedMessage[]): AppendResult[] {
    if (this.closed) throw new SpoolClosedError();
    const full = this.maxBytesReason() ?? this.disk.floorReason(commitBytes(messages));
    if (full) throw spoolFullError(full, this.counters.bytes, this.options.maxBytes);
    let appended: Appended;
    try {
      appended = this.group.commit(messages);
    } catch (err) {
      // No room for SQLite's pages or its write-ahead log: back-pressure like any full spool, not a failed message.
      if (this.disk.noteWriteError(err)) throw spoolFullError(this.disk.reason() ?? 'disk: SQLITE_FULL', this.counters.bytes, this.options.maxBytes, err);
      throw err;
    }
    // Only now is the transaction committed: in-memory state and the commit record follow it, never lead it.
    this.disk.noteCommitted();
    const { results, added, addedBytes, lastSeq } = appended;
    if (added > 0) this.record.update(lastSeq);
    if (this.routeMask !== 0 && added > 0) this.recent.add(appended.rows.map((r) => spooledOf(r.m, r.result.seq, r.result.messageId)));
    this.counters.appended(added, addedBytes);
    return results;
  }

  /**
   * The next messages for a sink after its cursor, at most `max` messages and about `maxBytes` payload
   * bytes (at least one message). Advances the cursor: leased rows are not handed out again until the
   * process restarts (the dispatcher retries a failed message from the copy it holds).
   */
  lease(sink: SinkName, max: number, maxBytes = Number.POSITIVE_INFINITY): SpooledMessage[] {
    if (this.closed) return [];
    const out: SpooledMessage[] = [];
    // What this process committed a moment ago comes from memory (recent-rows.ts); anything else from SQLite.
    const fromMemory = this.recent.take(this.cursors.get(sink) ?? 0, max, maxBytes, out);
    if (fromMemory !== undefined) {
      this.cursors.set(sink, fromMemory);
      this.recent.release(this.cursors);
      return out;
    }
    // Rows found corrupt are dead-lettered and skipped; lease on until something is left to deliver.
    for (;;) {
      const { last, corrupt } = this.rows.read(sink, this.cursors.get(sink) ?? 0, max, maxBytes, out);
      // The cursor moves only once the corrupt rows are dead-lettered: if that fails (a full disk), the lease throws
      // and the same rows are read again later, instead of the good ones among them being skipped until a restart.
      if (corrupt.length > 0) {
        this.deadLetterNow(sink, corrupt);
        this.options.onCorrupt?.(sink, corrupt);
      }
      this.cursors.set(sink, last);
      if (out.length > 0 || corrupt.length === 0) {
        this.recent.release(this.cursors);
        return out;
      }
    }
  }

  /**
   * Marks messages (as leased) delivered by a sink; rows no sink still needs are deleted in the same
   * transaction. The messages' topics and payloads size them for the byte count without reading them back.
   * Throws when the transaction cannot be committed (SQLITE_FULL): nothing changed, the counters neither.
   */
  ack(sink: SinkName, messages: readonly AckedMessage[]): void {
    if (this.closed || messages.length === 0) return;
    const delta = this.writes.guarded(() => this.writes.relaxed(() => this.db.transaction(() => this.rows.clearSinkBits(sink, messages))()));
    this.applyDelta(sink, delta);
    this.writes.reclaim();
  }

  /** Counters follow a committed transaction (invariant 6), never one in progress. */
  private applyDelta(sink: SinkName, d: CounterDelta): void {
    if (d.recount) this.refreshCounters(true);
    else this.counters.apply(sink, d);
  }

  /** Moves messages to the dead-letter store for one sink (with the reason) and clears that sink's bit. */
  deadLetter(sink: SinkName, items: readonly DeadLetterInput[]): void {
    if (this.closed || items.length === 0) return;
    this.deadLetterNow(sink, items);
    this.writes.reclaim();
  }

  private deadLetterNow(sink: SinkName, items: readonly DeadLetterInput[]): void {
    const delta = this.writes.guarded(() => this.writes.relaxed(() => this.deadLetterTx(sink, items)));
    this.applyDelta(sink, delta);
  }

  private deadLetterTx(sink: SinkName, items: readonly DeadLetterInput[]): CounterDelta {
    return this.db.transaction(() => {
      let added = 0;
      for (const item of items) added += this.deadLetters.insert(sink, item);
      const cleared = this.rows.clearSinkBits(sink, items.map((i) => i.message));
      return { ...cleared, bytes: cleared.bytes + added, deadLetters: items.length };
    })();
  }

  /** Dead letters put back for delivery: new rows pending for that sink, with their original message_id. */
  replayDeadLetters(filter: { sink?: SinkName; ids?: number[] }): number {
    if (this.closed) throw new SpoolClosedError();
    const replayed = this.deadLetters.replay(filter, (sink) => SINK_BITS[sink]);
    this.refreshCounters(true);
    return replayed;
  }

  stats(): SpoolStats {
    const fullReason = this.closed ? undefined : this.fullReason();
    return {
      messages: this.counters.messages,
      bytes: this.counters.bytes,
      maxBytes: this.options.maxBytes,
      full: fullReason !== undefined,
      fullReason,
      diskFreeBytes: this.disk.freeBytes(),
      reusableBytes: this.closed ? 0 : this.disk.reusableBytes(),
      minFreeBytes: this.disk.minFreeBytes,
      oldestReceivedAt: this.closed ? null : this.rows.oldestReceivedAt(),
      oldestSeq: this.closed ? null : this.rows.oldestSeq(),
      pending: this.counters.pendingBySink(),
      deadLetters: this.counters.deadLetters,
    };
  }

  /** A small durable setting of the node (e.g. the topic filters its session is subscribed to). */
  getMeta(key: string): string | undefined {
    if (this.closed) return undefined;
    return this.db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get(key) as string | undefined;
  }

  setMeta(key: string, value: string): void {
    if (this.closed) return;
    this.db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(key, value);
  }

  deleteMeta(key: string): void {
    if (this.closed) return;
    this.db.prepare('DELETE FROM meta WHERE key = ?').run(key);
  }

  /** The meta keys that start with `prefix`. */
  metaKeys(prefix: string): string[] {
    if (this.closed) return [];
    return this.db.prepare('SELECT key FROM meta WHERE substr(key, 1, ?) = ?').pluck().all(prefix.length, prefix) as string[];
  }

  /** The spool answers a trivial write (readiness: "the spool is writable"). */
  isWritable(): boolean {
    if (this.closed) return false;
    // A write (and its fsync) at most every 5 s, however often probes ask (a monotonic age: a wall clock set
    // back would stop the checks for as long as it was set back).
    const now = this.monotonic();
    if (now - this.writableCheckedAt < 5000) return this.writable;
    this.writableCheckedAt = now;
    try {
      this.writes.guarded(() => this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_write_check', ?)").run(String(this.clock.now())));
      this.writable = true;
    } catch {
      this.writable = false;
    }
    return this.writable;
  }

  private writable = true;
  private writableCheckedAt = Number.NEGATIVE_INFINITY;

  get isClosed(): boolean {
    return this.closed;
  }

  /** A new subscriber connection: the epoch its messages carry (inbound-window.ts), for a broker keeping `window` in flight. */
  beginInboundConnection(window?: number): number {
    return this.window.beginConnection(window);
  }

  /** The subscriber connection `epoch` closed, having written PUBACKs up to `acksWrittenUpTo` (its position). */
  endInboundConnection(epoch: number, acksWrittenUpTo: number): void {
    if (this.closed) return;
    this.window.endConnection(epoch, acksWrittenUpTo);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.recent.clear();
    this.db.close();
    this.record.close();
  }
}
