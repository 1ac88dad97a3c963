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
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { monotonicFactory } from 'ulid';
import type { InboundMessage, SinkName, SpooledMessage } from '../core/message.js';
import { SpoolClosedError, SpoolFullError, SpoolVersionError } from '../core/errors.js';
import { monotonicMs, systemClock, type Clock } from '../core/clock.js';
import { MIGRATIONS, ROW_OVERHEAD_BYTES, SCHEMA_SQL, SCHEMA_VERSION, SINK_BITS } from './schema.js';
import { DeadLetterStore, type DeadLetterInput } from './dead-letters.js';
import { InboundWindow, windowDigest, type SessionTag, type WindowMessage } from './inbound-window.js';
import { messageBytes, rowToMessage, type Row } from './rows.js';
import { rowChecksum } from './checksum.js';
import { checkSpoolFiles, CommitRecordFile, RECORD_FILE } from './commit-record.js';
import { DEFAULT_MIN_FREE_BYTES, DiskSpace, formatBytes, type StatFs } from './disk-space.js';

export { messageBytes, rowToMessage };

/** A message as the subscriber hands it over: with the connection and position it arrived on (QoS 1/2). */
export type SourcedMessage = InboundMessage & Partial<SessionTag>;

export interface SpoolOptions {
  /** Directory that holds `spool.db`. */
  dir: string;
  maxBytes: number;
  /** Sinks a new message is routed to. */
  sinks: SinkName[];
  /** `full` (default): fsync each commit; `normal`: survive process crashes, not power loss. */
  sync?: 'full' | 'normal';
  /**
   * SPOOL_MIN_FREE_BYTES: the spool counts as full when a commit would leave less free disk than this, counting
   * the free pages inside spool.db as free (disk-space.ts). Default 256 MiB.
   */
  minFreeDiskBytes?: number;
  /** Wall-clock time, for timestamps (dead_at, the readiness write check). */
  clock?: Clock;
  /** Monotonic milliseconds, for cache ages and intervals (default performance.now()). */
  monotonic?: () => number;
  /** statfs(2) of the spool's directory (tests pass their own). */
  statfs?: StatFs;
  /**
   * Start although the spool holds less than was committed (commit-record.ts): the loss is accepted and
   * reported in `openWarnings`, the damaged WAL is kept aside. Meant for one start after an operator has
   * looked; without it such a spool is refused with SpoolDamagedError.
   */
  acceptLoss?: boolean;
  /**
   * Called with the messages found corrupt when leased (bytes that no longer match their checksum), after
   * they were dead-lettered with reason `corrupt` for that sink: the node counts and logs them.
   */
  onCorrupt?: (sink: SinkName, items: readonly DeadLetterInput[]) => void;
  /** Information for the log while the node runs (an old spool.db switched to giving space back). */
  onNote?: (message: string) => void;
}

/** `duplicateOf` is '': the window journal keeps no message ids (they would triple it), only that it was stored. */
export type AppendResult = { stored: true; seq: number; messageId: string } | { stored: false; duplicateOf: string };

export interface SpoolStats {
  messages: number;
  bytes: number;
  maxBytes: number;
  full: boolean;
  /** Why it is full, in plain words: `SPOOL_MAX_BYTES reached: …` or `disk: …`. */
  fullReason?: string;
  /** Free bytes of the file system that holds the spool (statfs), and free pages inside spool.db. */
  diskFreeBytes?: number;
  reusableBytes: number;
  minFreeBytes: number;
  oldestReceivedAt: number | null;
  pending: Record<string, number>;
  deadLetters: number;
}

/** What `ack` needs of a delivered message: its row, and what it was charged against SPOOL_MAX_BYTES. */
export type AckedMessage = Pick<SpooledMessage, 'seq' | 'topic' | 'payload'>;

/**
 * How a transaction changes the in-memory counters, applied only once it has committed. `recount`: the rows
 * were not as expected (acknowledged twice), so everything is counted again from the database instead.
 */
interface CounterDelta {
  messages: number;
  bytes: number;
  pending: number;
  deadLetters: number;
  recount: boolean;
}

/** Bytes of the inbound-window journal per message (packet id and digest), for the size of a commit. */
const WINDOW_ENTRY_BYTES = 14;

/** A SpoolFullError whose message says why: `spool is full: disk: 12 MiB free on …`. */
function spoolFullError(reason: string, usedBytes: number, maxBytes: number, cause?: unknown): SpoolFullError {
  const err = new SpoolFullError(usedBytes, maxBytes);
  err.message = `spool is full: ${reason}`;
  err.context.reason = reason;
  if (cause !== undefined) err.cause = cause;
  return err;
}

/** Rows per multi-row INSERT (8 parameters each: far below SQLite's limit of 32,766 parameters). */
const INSERT_CHUNK = 50;
const COLUMNS = '(message_id, topic, payload, qos, retain, received_at, pending, crc)';
const ROW_PARAMS = '(?, ?, ?, ?, ?, ?, ?, ?)';

export class Spool {
  readonly db: Database.Database;
  readonly deadLetters: DeadLetterStore;
  private readonly window: InboundWindow;
  readonly path: string;
  private readonly clock: Clock;
  private readonly monotonic: () => number;
  private readonly disk: DiskSpace;
  private readonly routeMask: number;
  private readonly cursors = new Map<SinkName, number>();
  private readonly pendingCount = new Map<SinkName, number>();
  private bytes = 0;
  private deadLetterCount = 0;
  private dataVersion = -1;
  private messageCount = 0;
  private closed = false;
  private readonly stmt;
  private readonly record: CommitRecordFile;
  /**
   * What the node should log at start: a spool started although damaged (acceptLoss), a missing commit
   * record (the completeness of this start could not be checked), a disk too small for SPOOL_MIN_FREE_BYTES.
   */
  readonly openWarnings: string[];
  /** What the node should log at start as information (an old spool.db switched to giving space back). */
  readonly openNotes: string[] = [];

  static open(options: SpoolOptions): Spool {
    return new Spool(options);
  }

  private constructor(private readonly options: SpoolOptions) {
    this.clock = options.clock ?? systemClock;
    this.monotonic = options.monotonic ?? monotonicMs;
    mkdirSync(options.dir, { recursive: true });
    this.path = path.join(options.dir, 'spool.db');
    // Before SQLite opens the files for writing (which would checkpoint, or delete, a damaged WAL).
    this.openWarnings = checkSpoolFiles(this.path, options.acceptLoss === true);
    this.db = new Database(this.path);
    // Before WAL mode writes the first page of a new file: only then does it apply without a VACUUM (disk-space.ts).
    this.db.pragma('auto_vacuum = INCREMENTAL');
    this.db.pragma('journal_mode = WAL');
    // A write-ahead log that grew (a long `dlq` read held checkpoints back, a VACUUM) is cut back to this at the
    // next checkpoint; in steady use it stays near 4 MiB (1,000 pages, SQLite's autocheckpoint) and is not touched.
    this.db.pragma(`journal_size_limit = ${16 * 1024 * 1024}`);
    this.db.pragma(`synchronous = ${options.sync === 'normal' ? 'NORMAL' : 'FULL'}`);
    // The dlq commands open the same file while the node runs; wait for its write lock instead of failing.
    this.db.pragma('busy_timeout = 5000');
    try {
      this.migrate();
      // The record starts from what the spool holds now (checked above, or accepted as it is).
      const spoolId = this.db.prepare("SELECT value FROM meta WHERE key = 'spool_id'").pluck().get() as string;
      const committed = (this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").pluck().get() as number | undefined) ?? 0;
      this.record = CommitRecordFile.create(path.join(options.dir, RECORD_FILE), spoolId, committed);
      this.disk = new DiskSpace(this.db, {
        dir: options.dir,
        file: this.path,
        minFreeBytes: options.minFreeDiskBytes ?? DEFAULT_MIN_FREE_BYTES,
        statfs: options.statfs,
        monotonic: this.monotonic,
      });
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.routeMask = options.sinks.reduce((mask, s) => mask | SINK_BITS[s], 0);
    this.stmt = {
      insert: this.db.prepare(`INSERT INTO messages ${COLUMNS} VALUES ${ROW_PARAMS}`),
      insertChunk: this.db.prepare(`INSERT INTO messages ${COLUMNS} VALUES ${Array(INSERT_CHUNK).fill(ROW_PARAMS).join(', ')}`),
      lease: this.db
        .prepare('SELECT seq, message_id, topic, payload, qos, retain, received_at, crc FROM messages WHERE seq > ? AND (pending & ?) != 0 ORDER BY seq LIMIT ?')
        .raw(true),
      clearBits: this.db.prepare(
        'UPDATE messages SET pending = pending & ~@bit WHERE seq IN (SELECT value FROM json_each(@list)) AND (pending & @bit) != 0',
      ),
      deleteOnly: this.db.prepare('DELETE FROM messages WHERE seq IN (SELECT value FROM json_each(@list)) AND pending = @bit'),
      deleteDone: this.db.prepare(
        'DELETE FROM messages WHERE seq IN (SELECT value FROM json_each(?)) AND pending = 0 RETURNING length(payload) + length(CAST(topic AS BLOB)) AS size',
      ),
      oldest: this.db.prepare('SELECT received_at FROM messages ORDER BY seq LIMIT 1').pluck(),
    };
    this.deadLetters = new DeadLetterStore(this.db, this.clock);
    this.window = new InboundWindow(this.db);
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
    if (full) this.openWarnings.push(`the spool is full at start (${full}): messages are not acknowledged until there is room`);
  }

  private readonly newId = monotonicFactory();

  /**
   * Creates the tables of a new spool, or brings one of an older format version to this one (MIGRATIONS, one
   * transaction each); refuses a version it does not know rather than misread its rows. Every spool gets a
   * random id, which the commit record names.
   */
  private migrate(): void {
    this.db.exec(SCHEMA_SQL);
    this.db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run('schema_version', String(SCHEMA_VERSION));
    let version = Number(this.db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get());
    while (version < SCHEMA_VERSION && MIGRATIONS[version] !== undefined) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[version]!);
        this.db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(version + 1));
      })();
      version += 1;
    }
    if (version !== SCHEMA_VERSION) throw new SpoolVersionError(this.path, version, SCHEMA_VERSION);
    this.db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run('spool_id', randomBytes(16).toString('hex'));
  }

  /**
   * Rows still pending for a sink that is no longer configured would never leave. They are moved to the
   * dead-letter store (reason `sink_disabled`), where `dlq replay` can bring them back, instead of being
   * dropped or held forever.
   */
  private releaseUnroutedSinks(): void {
    for (const [sink, bit] of Object.entries(SINK_BITS) as [SinkName, number][]) {
      if (this.routeMask & bit) continue;
      // In chunks: a backlog of gigabytes must not be loaded into memory at once.
      const select = this.db.prepare(
        'SELECT seq, message_id, topic, payload, qos, retain, received_at FROM messages WHERE (pending & ?) != 0 ORDER BY seq LIMIT 5000',
      );
      for (;;) {
        const rows = select.all(bit) as Row[];
        if (rows.length === 0) break;
        this.deadLetterNow(
          sink,
          rows.map((r) => ({ message: rowToMessage(r), reason: 'sink_disabled', detail: `sink ${sink} is no longer configured` })),
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
    if (this.routeMask === 0 && this.db.prepare('DELETE FROM messages WHERE pending = 0').run().changes > 0) {
      force = true;
      this.reclaim();
    }
    // PRAGMA data_version changes only when another connection (a dlq command) committed: recounting
    // scans the whole spool, so it is skipped when this process made every change itself.
    const version = this.db.pragma('data_version', { simple: true }) as number;
    if (!force && version === this.dataVersion) return;
    this.dataVersion = version;
    this.deadLetterCount = this.deadLetters.count();
    const totals = this.db
      .prepare('SELECT COUNT(*) AS n, COALESCE(SUM(length(payload) + length(CAST(topic AS BLOB))), 0) AS b FROM messages')
      .get() as { n: number; b: number };
    this.messageCount = totals.n;
    this.bytes = totals.b + totals.n * ROW_OVERHEAD_BYTES + this.deadLetters.totalBytes();
    for (const sink of this.options.sinks) {
      const n = this.db.prepare('SELECT COUNT(*) FROM messages WHERE (pending & ?) != 0').pluck().get(SINK_BITS[sink]) as number;
      this.pendingCount.set(sink, n);
    }
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

  private maxBytesReason(): string | undefined {
    if (this.bytes < this.options.maxBytes) return undefined;
    return `SPOOL_MAX_BYTES reached: ${formatBytes(this.bytes)} of messages and dead letters held, limit ${formatBytes(this.options.maxBytes)}`;
  }

  /**
   * Commits the messages in one transaction and returns one result per message, in order.
   * Throws SpoolFullError (nothing stored) when the spool is full, SpoolClosedError after close().
   * The disk's room is checked before every commit, with the commit's own size: a burst cannot outrun it.
   */
  append(messages: readonly SourcedMessage[]): AppendResult[] {
    if (this.closed) throw new SpoolClosedError();
    const full = this.maxBytesReason() ?? this.disk.floorReason(commitBytes(messages));
    if (full) throw spoolFullError(full, this.bytes, this.options.maxBytes);
    this.window.begin();
    let outcome: ReturnType<typeof this.appendTx>;
    try {
      outcome = this.appendTx(messages);
    } catch (err) {
      this.window.rollback();
      // No room for SQLite's pages or its write-ahead log: back-pressure like any full spool, not a failed message.
      if (this.disk.noteWriteError(err)) throw spoolFullError(this.disk.reason() ?? 'disk: SQLITE_FULL', this.bytes, this.options.maxBytes, err);
      throw err;
    }
    // Only now is the transaction committed: in-memory state and the commit record follow it, never lead it.
    this.disk.noteCommitted();
    this.window.commit();
    const { results, added, addedBytes, lastSeq } = outcome;
    if (added > 0) this.record.update(lastSeq);
    this.messageCount += added;
    this.bytes += addedBytes;
    if (this.routeMask !== 0) for (const s of this.options.sinks) this.pendingCount.set(s, (this.pendingCount.get(s) ?? 0) + added);
    return results;
  }

  private readonly appendTx = (messages: readonly SourcedMessage[]) =>
    this.db.transaction(() => {
      const results: AppendResult[] = [];
      const rows: { m: InboundMessage; result: { stored: true; seq: number; messageId: string } }[] = [];
      let addedBytes = 0;
      for (const m of messages) {
        // QoS 1/2 messages of the subscriber carry their connection and position: journalled, and a DUP one
        // is skipped only when it is certainly a redelivery (inbound-window.ts).
        if (m.packetId !== undefined && m.epoch !== undefined && m.position !== undefined) {
          const digest = windowDigest(m.topic, m.payload);
          const redelivery = this.window.isRedelivery(m as WindowMessage, digest);
          this.window.record(m as WindowMessage, digest);
          if (redelivery) {
            // The message id it repeats is not journalled (it would triple the journal).
            results.push({ stored: false, duplicateOf: '' });
            continue;
          }
        }
        const result = { stored: true as const, seq: 0, messageId: this.newId(m.receivedAt) };
        results.push(result);
        rows.push({ m, result });
        addedBytes += messageBytes(m.topic, m.payload);
      }
      this.insertRows(rows);
      this.window.write();
      return { results, added: rows.length, addedBytes, lastSeq: rows.length > 0 ? rows[rows.length - 1]!.result.seq : 0 };
    })();

  /**
   * Inserts rows INSERT_CHUNK at a time: one multi-row statement costs less than half as much per row as
   * one statement per row (measured: 1.3 against 3.1 ms per 1,000 rows). Within one statement the
   * AUTOINCREMENT seqs are consecutive, so each row's seq follows from the last one.
   */
  private insertRows(rows: { m: InboundMessage; result: { seq: number; messageId: string } }[]): void {
    let i = 0;
    const args: unknown[] = [];
    for (; i + INSERT_CHUNK <= rows.length; i += INSERT_CHUNK) {
      args.length = 0;
      for (let j = i; j < i + INSERT_CHUNK; j++) {
        const { m, result } = rows[j];
        const crc = rowChecksum(m.topic, m.payload, result.messageId, m.qos, m.retain, m.receivedAt);
        args.push(result.messageId, m.topic, m.payload, m.qos, m.retain ? 1 : 0, m.receivedAt, this.routeMask, crc);
      }
      const last = Number(this.stmt.insertChunk.run(...args).lastInsertRowid);
      for (let j = 0; j < INSERT_CHUNK; j++) rows[i + j].result.seq = last - INSERT_CHUNK + 1 + j;
    }
    for (; i < rows.length; i++) {
      const { m, result } = rows[i];
      const crc = rowChecksum(m.topic, m.payload, result.messageId, m.qos, m.retain, m.receivedAt);
      const info = this.stmt.insert.run(result.messageId, m.topic, m.payload, m.qos, m.retain ? 1 : 0, m.receivedAt, this.routeMask, crc);
      result.seq = Number(info.lastInsertRowid);
    }
  }

  /**
   * The next messages for a sink after its cursor, at most `max` messages and about `maxBytes` payload
   * bytes (at least one message). Advances the cursor: leased rows are not handed out again until the
   * process restarts (the dispatcher retries a failed message from the copy it holds).
   */
  lease(sink: SinkName, max: number, maxBytes = Number.POSITIVE_INFINITY): SpooledMessage[] {
    if (this.closed) return [];
    const out: SpooledMessage[] = [];
    // Rows found corrupt are dead-lettered and skipped; lease on until something is left to deliver.
    for (;;) {
      const cursor = this.cursors.get(sink) ?? 0;
      // Raw rows (arrays): one object per message instead of two on the delivery hot path.
      const rows = this.stmt.lease.all(cursor, SINK_BITS[sink], max) as [number, string, string, Buffer, number, number, number, number | null][];
      const corrupt: DeadLetterInput[] = [];
      let bytes = 0;
      let last = cursor;
      for (const r of rows) {
        if (out.length > 0 && bytes + r[3].length > maxBytes) break;
        const m: SpooledMessage = { seq: r[0], messageId: r[1], topic: r[2], payload: r[3], qos: r[4] as 0 | 1 | 2, retain: r[5] === 1, receivedAt: r[6] };
        last = m.seq;
        const crc = r[7];
        if (crc !== null) {
          const now = rowChecksum(m.topic, m.payload, m.messageId, m.qos, m.retain, m.receivedAt);
          if (now !== crc) {
            corrupt.push({ message: m, reason: 'corrupt', detail: corruptDetail(this.path, m.seq, crc, now) });
            continue;
          }
        }
        bytes += m.payload.length;
        out.push(m);
      }
      // The cursor moves only once the corrupt rows are dead-lettered: if that fails (a full disk), the lease throws
      // and the same rows are read again later, instead of the good ones among them being skipped until a restart.
      if (corrupt.length > 0) {
        this.deadLetterNow(sink, corrupt);
        this.options.onCorrupt?.(sink, corrupt);
      }
      this.cursors.set(sink, last);
      if (out.length > 0 || corrupt.length === 0) return out;
    }
  }

  /**
   * Marks messages (as leased) delivered by a sink; rows no sink still needs are deleted in the same
   * transaction. The messages' topics and payloads size them for the byte count without reading them back.
   * Throws when the transaction cannot be committed (SQLITE_FULL): nothing changed, the counters neither.
   */
  ack(sink: SinkName, messages: readonly AckedMessage[]): void {
    if (this.closed || messages.length === 0) return;
    const delta = this.write(() => this.relaxedSync(() => this.db.transaction(() => this.clearSinkBits(sink, messages))()));
    this.applyDelta(sink, delta);
    this.reclaim();
  }

  /**
   * Runs a transaction without its own fsync (synchronous=NORMAL; in WAL mode the next FULL commit syncs
   * it too). For acknowledgements and dead letters only: if a crash loses one, the message is still
   * pending and is delivered again (same message_id), never lost. Appends keep synchronous=FULL.
   */
  private syncPragmas: { normal: Database.Statement; full: Database.Statement } | undefined;

  private relaxedSync<T>(fn: () => T): T {
    if (this.options.sync === 'normal') return fn();
    // Prepared once: db.pragma() prepares its statement on every call, twice per acknowledgement here.
    this.syncPragmas ??= { normal: this.db.prepare('PRAGMA synchronous = NORMAL'), full: this.db.prepare('PRAGMA synchronous = FULL') };
    this.syncPragmas.normal.run();
    try {
      return fn();
    } finally {
      this.syncPragmas.full.run();
    }
  }

  /** Runs a write, noting a SQLITE_FULL so that readiness names the disk as the cause. */
  private write<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      this.disk.noteWriteError(err);
      throw err;
    }
  }

  /** Counters follow a committed transaction (invariant 6), never one in progress. */
  private applyDelta(sink: SinkName, d: CounterDelta): void {
    if (d.recount) {
      this.refreshCounters(true);
      return;
    }
    const pending = this.pendingCount.get(sink);
    if (pending !== undefined) this.pendingCount.set(sink, pending - d.pending);
    this.messageCount -= d.messages;
    this.bytes += d.bytes;
    this.deadLetterCount += d.deadLetters;
  }

  /** Rows were deleted: give free pages beyond a small reserve back to the file system (disk-space.ts). */
  private reclaim(): void {
    // Only a step that gives pages back writes (and drops the fsync); the checks before it are reads.
    const note = this.disk.reclaim(false, (step) => this.relaxedSync(step));
    if (note) this.options.onNote?.(note);
  }

  /**
   * Clears one sink's bit on many rows and deletes the rows no sink still needs: two statements for the
   * whole batch (the seqs passed as one JSON array) rather than two per message. Call inside a transaction;
   * returns the change to the counters, for the caller to apply once it has committed.
   */
  private clearSinkBits(sink: SinkName, messages: readonly AckedMessage[]): CounterDelta {
    const bit = SINK_BITS[sink];
    const list = JSON.stringify(messages.map((m) => m.seq));
    if (this.routeMask === bit) {
      // The only routed sink: a row pending for it has no other bit (others were released at open), so
      // one DELETE does it; this is the hot path of a single-sink node. When every row went, the byte
      // count follows from the messages in hand; RETURNING each row's size would double the cost of an
      // acknowledgement (measured: 1.9 against 1.0 ms per 1,000 rows). When some row was already gone
      // (acknowledged again: the dispatcher sends a batch again when recording its outcomes failed half
      // way, after the acknowledgement but before its dead letters) the counters are recounted instead.
      const removed = this.stmt.deleteOnly.run({ bit, list }).changes;
      if (removed !== messages.length) return { messages: 0, bytes: 0, pending: 0, deadLetters: 0, recount: true };
      let bytes = 0;
      for (const m of messages) bytes -= messageBytes(m.topic, m.payload);
      return { messages: removed, bytes, pending: removed, deadLetters: 0, recount: false };
    }
    const changed = this.stmt.clearBits.run({ bit, list }).changes;
    const gone = this.stmt.deleteDone.all(list) as { size: number }[];
    let bytes = 0;
    for (const g of gone) bytes -= g.size + ROW_OVERHEAD_BYTES;
    return { messages: gone.length, bytes, pending: changed, deadLetters: 0, recount: false };
  }

  /** Moves messages to the dead-letter store for one sink (with the reason) and clears that sink's bit. */
  deadLetter(sink: SinkName, items: readonly DeadLetterInput[]): void {
    if (this.closed || items.length === 0) return;
    this.deadLetterNow(sink, items);
    this.reclaim();
  }

  private deadLetterNow(sink: SinkName, items: readonly DeadLetterInput[]): void {
    const delta = this.write(() => this.relaxedSync(() => this.deadLetterTx(sink, items)));
    this.applyDelta(sink, delta);
  }

  private deadLetterTx(sink: SinkName, items: readonly DeadLetterInput[]): CounterDelta {
    return this.db.transaction(() => {
      let added = 0;
      for (const item of items) added += this.deadLetters.insert(sink, item);
      const cleared = this.clearSinkBits(sink, items.map((i) => i.message));
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
    const pending: Record<string, number> = {};
    for (const [sink, n] of this.pendingCount) pending[sink] = n;
    const fullReason = this.closed ? undefined : this.fullReason();
    return {
      messages: this.messageCount,
      bytes: this.bytes,
      maxBytes: this.options.maxBytes,
      full: fullReason !== undefined,
      fullReason,
      diskFreeBytes: this.disk.freeBytes(),
      reusableBytes: this.closed ? 0 : this.disk.reusableBytes(),
      minFreeBytes: this.disk.minFreeBytes,
      oldestReceivedAt: this.closed ? null : ((this.stmt.oldest.get() as number | undefined) ?? null),
      pending,
      deadLetters: this.deadLetterCount,
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

  /** The spool answers a trivial write (readiness: "the spool is writable"). */
  isWritable(): boolean {
    if (this.closed) return false;
    // A write (and its fsync) at most every 5 s, however often probes ask (a monotonic age: a wall clock set
    // back would stop the checks for as long as it was set back).
    const now = this.monotonic();
    if (now - this.writableCheckedAt < 5000) return this.writable;
    this.writableCheckedAt = now;
    try {
      this.write(() => this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_write_check', ?)").run(String(this.clock.now())));
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
    this.db.close();
    this.record.close();
  }
}

/** About what a commit of these messages adds on disk: their rows (as counted for SPOOL_MAX_BYTES) and journal entries. */
function commitBytes(messages: readonly SourcedMessage[]): number {
  let n = 0;
  for (const m of messages) n += messageBytes(m.topic, m.payload) + WINDOW_ENTRY_BYTES;
  return n;
}

function corruptDetail(file: string, seq: number, stored: number, now: number): string {
  const hex = (n: number) => (n >>> 0).toString(16).padStart(8, '0');
  return `the stored bytes of seq ${seq} in ${file} no longer match the checksum written at commit (CRC-32C ${hex(stored)}, now ${hex(now)}): the spool file was damaged on disk`;
}
