/**
 * What the spool can still store on its disk, and giving space back as the backlog drains.
 *
 * "Full" is judged by room, not by the file system's free space alone: SQLite puts new rows in the free pages
 * inside spool.db (PRAGMA freelist_count × page_size) before it grows the file, so those pages count as room.
 * Without that, a spool that once filled a small disk stayed "full" after its backlog drained, because the
 * file kept its largest size (issue #11).
 *
 * The pages a commit writes go to the write-ahead log first and are copied into spool.db at the next checkpoint,
 * which grows the file after the commit was judged: the log's size (about 4 MiB in steady use, SQLite's
 * autocheckpoint at 1,000 pages) is kept out of the room, or a full spool ended a few MiB below its floor.
 *
 * The floor (SPOOL_MIN_FREE_BYTES) is checked before every commit with the commit's own size, by a statfs(2),
 * a stat(2) of the log and a read of the free-page count (measured: 7.5 µs together, against 3.7 ms for a commit
 * of 1,000 messages): a cached answer let a burst commit 80 MB past the floor in one second.
 *
 * The space itself is given back too (incremental vacuum): spool.db is created with auto_vacuum=INCREMENTAL,
 * and after deliveries free more than KEEP_FREE_BYTES inside it, the pages beyond that are returned to the file
 * system a step at a time, so Mosquitto's database, logs and the file sink get the disk back. A spool created
 * before this (auto_vacuum NONE) can switch only by a VACUUM, which rewrites the live data: that is done when
 * the live data is small (at open, or once a backlog has drained); until then its free pages are reused.
 */
import type Database from 'better-sqlite3';
import { statfsSync, statSync } from 'node:fs';
import type { ErrorCode } from '../core/errors.js';

/** What the spool needs of statfs(2): blocks free to unprivileged users, block size, blocks in all. */
export interface FsStats {
  bavail: number;
  bsize: number;
  blocks: number;
}
export type StatFs = (dir: string) => FsStats;

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** SPOOL_MIN_FREE_BYTES's default (src/config/schema.ts says why). */
export const DEFAULT_MIN_FREE_BYTES = 256 * MiB;
/** Free pages kept inside spool.db for new rows; pages freed beyond this are given back to the file system. */
const KEEP_FREE_BYTES = 4 * MiB;
/**
 * Free pages beyond the reserve are given back once they reach this (fewer, larger steps), at most
 * RECLAIM_MAX_BYTES per call: a step moves pages from the end of the file into free ones, about 5 ms per MiB
 * (measured), and the event loop waits for it. One acknowledgement frees at most a batch (Pub/Sub: 9 MB).
 */
const RECLAIM_MIN_BYTES = 1 * MiB;
/** Below this many times SPOOL_MIN_FREE_BYTES free on the file system, freed pages go back at once (worthGivingBack). */
const RECLAIM_WHEN_TIGHT = 4;
const RECLAIM_MAX_BYTES = 16 * MiB;
/** A spool file no larger than this keeps its free pages while the file system has room (worthGivingBack). */
const KEEP_SMALL_FILE_BYTES = 64 * MiB;
/**
 * With room on the file system, a large file gives its pages back once its live data is down to this, in one
 * VACUUM (worthGivingBack says why not by incremental vacuum): it rewrites only the live data, about 55 ms here.
 */
const SHRINK_WHEN_LIVE_BYTES = 8 * MiB;
/** Largest live data rewritten to switch an old spool to incremental vacuum: at open (measured: 0.44 s for 64 MiB)… */
const MIGRATE_AT_OPEN_BYTES = 64 * MiB;
/** …and while the node runs (once a backlog has drained; the event loop waits for it: about 55 ms). */
const MIGRATE_RUNNING_BYTES = 8 * MiB;
/** A migration that failed (no room, a lock) is tried again after this long. */
const MIGRATE_RETRY_MS = 60_000;
/** After SQLITE_FULL the disk counts as full until this much more is free (or messages are committed again). */
const FREED_AFTER_FULL_BYTES = 1 * MiB;

/** Byte counts as people read them: `12 MiB`, `1.5 GiB`, `900 bytes` (rounded down: "below" stays true). */
export function formatBytes(n: number): string {
  for (const [unit, size] of [['GiB', GiB], ['MiB', MiB], ['KiB', KiB]] as const) {
    if (n < size) continue;
    const v = n / size;
    return `${v >= 10 ? Math.floor(v) : Math.floor(v * 10) / 10} ${unit}`;
  }
  return n === 1 ? '1 byte' : `${Math.max(0, Math.floor(n))} bytes`;
}

/** SQLite could not write for lack of disk: SQLITE_FULL (the file system returned ENOSPC or EDQUOT). */
export function isDiskFullError(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'SQLITE_FULL';
}

export interface DiskSpaceOptions {
  /** The spool's directory: statfs is asked about its file system, and messages name it. */
  dir: string;
  /** spool.db, for messages. */
  file: string;
  minFreeBytes: number;
  statfs?: StatFs;
  /** Monotonic milliseconds, for the migration's retry interval. */
  monotonic: () => number;
}

export class DiskSpace {
  readonly minFreeBytes: number;
  private readonly pageSize: number;
  private readonly statfs: StatFs;
  private readonly freelist: Database.Statement;
  private readonly pageCount: Database.Statement;
  private incremental: boolean;
  /** Set once the file grew past KEEP_SMALL_FILE_BYTES; cleared once its free pages are down to the reserve (worthGivingBack). */
  private shrinking = false;
  private migrateTriedAt = Number.NEGATIVE_INFINITY;
  /** When a VACUUM of a drained file last failed or found no room (compact). */
  private compactTriedAt = Number.NEGATIVE_INFINITY;
  /** SQLite refused a write for lack of disk, with the file system's free bytes at that moment. */
  private refused: { freeBytes: number } | undefined;

  constructor(
    private readonly db: Database.Database,
    private readonly opts: DiskSpaceOptions,
  ) {
    this.minFreeBytes = opts.minFreeBytes;
    this.statfs = opts.statfs ?? statfsSync;
    this.pageSize = db.pragma('page_size', { simple: true }) as number;
    this.freelist = db.prepare('PRAGMA freelist_count').pluck();
    this.pageCount = db.prepare('PRAGMA page_count').pluck();
    this.incremental = db.pragma('auto_vacuum', { simple: true }) === 2;
  }

  /** Bytes the file system has free for this process (statfs f_bavail × f_bsize); undefined when statfs fails. */
  freeBytes(): number | undefined {
    try {
      const s = this.statfs(this.opts.dir);
      return s.bavail * s.bsize;
    } catch {
      return undefined;
    }
  }

  /** Free pages inside spool.db: SQLite fills them with new rows before it grows the file. */
  reusableBytes(): number {
    return (this.freelist.get() as number) * this.pageSize;
  }

  /** The write-ahead log's size: at most this much is still to be copied into spool.db, growing it. */
  private walBytes(): number {
    try {
      return statSync(`${this.opts.file}-wal`).size;
    } catch {
      return 0;
    }
  }

  /**
   * Why a commit of about `commitBytes` must wait, or undefined when it fits: it would leave less than
   * SPOOL_MIN_FREE_BYTES, counting the free pages inside spool.db as room. A statfs that fails decides nothing.
   */
  floorReason(commitBytes: number): string | undefined {
    const free = this.freeBytes();
    if (free === undefined) return undefined;
    const reusable = this.reusableBytes();
    const wal = this.walBytes();
    const room = free + reusable - wal;
    if (room - commitBytes >= this.minFreeBytes) return undefined;
    const parts = [reusable > 0 ? `counting ${formatBytes(reusable)} of free pages inside spool.db` : '', wal > 0 ? `less ${formatBytes(wal)} of write-ahead log` : ''];
    const how = parts.filter(Boolean).join(', ');
    const have = `${formatBytes(Math.max(0, room))} free on ${this.opts.dir}${how ? ` (${how})` : ''}`;
    const floor = `SPOOL_MIN_FREE_BYTES ${formatBytes(this.minFreeBytes)}`;
    return room < this.minFreeBytes
      ? `disk: ${have}, below ${floor}`
      : `disk: ${have}; a commit of ${formatBytes(commitBytes)} would leave less than ${floor}`;
  }

  /**
   * Why the spool cannot take messages now (readiness), or undefined: the floor, or SQLite having refused a write
   * for lack of disk, until messages are committed again or the file system has FREED_AFTER_FULL_BYTES more free.
   */
  reason(): string | undefined {
    const floor = this.floorReason(0);
    if (floor || !this.refused) return floor;
    const free = this.freeBytes();
    if (free !== undefined && free >= this.refused.freeBytes + FREED_AFTER_FULL_BYTES) {
      this.refused = undefined;
      return undefined;
    }
    return `disk: SQLite could not write to ${this.opts.file} (SQLITE_FULL: database or disk is full); ${free === undefined ? 'statfs failed' : `${formatBytes(free)} free on ${this.opts.dir}`}`;
  }

  /** A write failed: remembers a SQLITE_FULL (returns true for one), so that readiness names the disk. */
  noteWriteError(err: unknown): boolean {
    if (!isDiskFullError(err)) return false;
    this.refused = { freeBytes: this.freeBytes() ?? 0 };
    return true;
  }

  /** Messages were committed: the disk took them, whatever SQLite refused before. */
  noteCommitted(): void {
    this.refused = undefined;
  }

  /** Notes for the log at open: a file system smaller than the floor never takes a message. */
  openWarnings(): { code: ErrorCode; message: string }[] {
    try {
      const s = this.statfs(this.opts.dir);
      const total = s.blocks * s.bsize;
      if (total > this.minFreeBytes) return [];
      const message =
        `the file system of ${this.opts.dir} holds ${formatBytes(total)} in all, not more than SPOOL_MIN_FREE_BYTES ` +
        `${formatBytes(this.minFreeBytes)}: the spool will take no message (back-pressure) until SPOOL_MIN_FREE_BYTES is lowered or DATA_DIR gets a larger disk`;
      return [{ code: 'SPOOL_DISK_TOO_SMALL', message }];
    } catch {
      return [];
    }
  }

  /**
   * Gives free pages beyond KEEP_FREE_BYTES back to the file system, up to RECLAIM_MAX_BYTES per call; on a
   * spool created before incremental vacuum, switches it once its live data is small. Call after rows were deleted,
   * outside a transaction. Returns what it did for the log, or undefined. A failure (no disk for the write-ahead
   * log, a lock) changes nothing: the pages stay free inside spool.db and count as room.
   */
  reclaim(atOpen = false, write: (step: () => void) => void = (step) => step()): string | undefined {
    try {
      if (!this.incremental) return this.migrate(atOpen);
      const free = this.freelist.get() as number;
      const beyond = free - KEEP_FREE_BYTES / this.pageSize;
      if (beyond < RECLAIM_MIN_BYTES / this.pageSize) {
        this.shrinking = false;
        return undefined;
      }
      const how = this.worthGivingBack(free);
      if (how === undefined) return undefined;
      // A short free list (at most one step's worth) goes back by incremental vacuum: cheap, and no copy of the file.
      if (how === 'vacuum' && free * this.pageSize > RECLAIM_MAX_BYTES) return this.compact(free, write);
      // incremental_vacuum returns a row per page freed: db.pragma steps it to the end (a .run() frees one page).
      write(() => this.db.pragma(`incremental_vacuum(${Math.min(beyond, RECLAIM_MAX_BYTES / this.pageSize)})`));
      return undefined;
    } catch (err) {
      this.noteWriteError(err);
      return undefined;
    }
  }

  /**
   * Giving pages back moves live pages from the end of the file into free ones (about 5 ms per MiB): while a large
   * backlog drains with room to spare, that would rewrite most of it once more for nothing, since new rows reuse
   * the free pages and "full" already counts them as room. So pages go back by incremental vacuum when the file
   * system is tight (less than RECLAIM_WHEN_TIGHT × SPOOL_MIN_FREE_BYTES free, where other writers need it), and
   * otherwise once a large file's backlog has drained (more free pages than live ones, and the live data down to
   * SHRINK_WHEN_LIVE_BYTES), in one VACUUM: that is when a file left large by an outage shrinks.
   *
   * Measured draining ten million messages (docs/performance.md, "A backlog of ten million"): incremental vacuum
   * from half drained moved the second half's live data again and again (each page freed at the front filled from
   * the end), and the last million went at 0.72× the rate of the first; from the last 64 MiB it was slower still
   * (0.20×): the steps then gave back 1.9 GB at 16 MiB each, behind the acknowledgements. A VACUUM of the few MiB
   * left rewrites only them.
   */
  private worthGivingBack(freePages: number): 'incremental' | 'vacuum' | undefined {
    const fsFree = this.freeBytes();
    if (fsFree === undefined || fsFree < RECLAIM_WHEN_TIGHT * this.minFreeBytes) return 'incremental';
    const pages = this.pageCount.get() as number;
    // A file that has not grown past KEEP_SMALL_FILE_BYTES stays as it is: in a live stream each acknowledgement
    // frees pages that the next commits take again, and giving them back moved pages at nearly every one (2.4 % of
    // the node's CPU end to end). One that did grow past it shrinks all the way, down to the reserve.
    if (pages * this.pageSize > KEEP_SMALL_FILE_BYTES) this.shrinking = true;
    const livePages = pages - freePages;
    return this.shrinking && freePages >= livePages && livePages * this.pageSize <= SHRINK_WHEN_LIVE_BYTES ? 'vacuum' : undefined;
  }

  /**
   * Rewrites spool.db without its free pages (VACUUM: the live data only, through the write-ahead log); tried again
   * after MIGRATE_RETRY_MS when it failed or found too little room for the copy.
   */
  private compact(freePages: number, write: (step: () => void) => void): string | undefined {
    const now = this.opts.monotonic();
    if (now - this.compactTriedAt < MIGRATE_RETRY_MS) return undefined;
    this.compactTriedAt = now;
    const live = ((this.pageCount.get() as number) - freePages) * this.pageSize;
    if (!this.roomToRewrite(live)) return undefined;
    write(() => this.db.exec('VACUUM'));
    this.compactTriedAt = Number.NEGATIVE_INFINITY;
    return `${this.opts.file} gave ${formatBytes(freePages * this.pageSize)} of delivered rows back to the file system (its backlog has drained; rewrote ${formatBytes(live)} of live data)`;
  }

  /**
   * Room for a VACUUM of `live` bytes: the rewritten pages pass through the write-ahead log on this disk (and a
   * temporary copy in the temp directory), and SPOOL_MIN_FREE_BYTES must stay free.
   */
  private roomToRewrite(live: number): boolean {
    const free = this.freeBytes();
    return free === undefined || free >= 2 * live + this.minFreeBytes;
  }

  /** VACUUM rewrites the live data into a file with auto_vacuum=INCREMENTAL (set before the spool's tables existed, it needs none). */
  private migrate(atOpen: boolean): string | undefined {
    const now = this.opts.monotonic();
    if (now - this.migrateTriedAt < MIGRATE_RETRY_MS) return undefined;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const freePages = this.freelist.get() as number;
    const live = (pages - freePages) * this.pageSize;
    if (live > (atOpen ? MIGRATE_AT_OPEN_BYTES : MIGRATE_RUNNING_BYTES)) return undefined;
    if (!this.roomToRewrite(live)) return undefined;
    this.migrateTriedAt = now;
    this.db.pragma('auto_vacuum = INCREMENTAL');
    this.db.exec('VACUUM');
    this.incremental = this.db.pragma('auto_vacuum', { simple: true }) === 2;
    if (!this.incremental) return undefined;
    // Switched once its backlog was small: what is freed from here on goes back too, whatever the file's size.
    this.shrinking = true;
    return `${this.opts.file} now gives freed space back to the file system (auto_vacuum=INCREMENTAL): rewrote ${formatBytes(live)} of live data, returned ${formatBytes(freePages * this.pageSize)}`;
  }

  /** True once spool.db gives freed pages back (auto_vacuum=INCREMENTAL). */
  get givesSpaceBack(): boolean {
    return this.incremental;
  }
}
