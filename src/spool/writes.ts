import type Database from 'better-sqlite3';
import type { DiskSpace } from './disk-space.js';

/**
 * How the spool's writes other than appends reach the disk: acknowledgements and dead letters without their
 * own fsync, every write's SQLITE_FULL noted for readiness, and freed pages given back after rows left.
 */
export class SpoolWrites {
  private syncPragmas: { normal: Database.Statement; full: Database.Statement } | undefined;

  constructor(
    private readonly db: Database.Database,
    private readonly disk: DiskSpace,
    private readonly sync: 'full' | 'normal' | undefined,
    private readonly onNote: ((message: string) => void) | undefined,
  ) {}

  /**
   * Runs a transaction without its own fsync (synchronous=NORMAL; in WAL mode the next FULL commit syncs
   * it too). For acknowledgements and dead letters only: if a crash loses one, the message is still
   * pending and is delivered again (same message_id), never lost. Appends keep synchronous=FULL.
   */
  relaxed<T>(fn: () => T): T {
    if (this.sync === 'normal') return fn();
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
  guarded<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      this.disk.noteWriteError(err);
      throw err;
    }
  }

  /** Rows were deleted: give free pages beyond a small reserve back to the file system (disk-space.ts). */
  reclaim(): void {
    // Only a step that gives pages back writes (and drops the fsync); the checks before it are reads.
    const note = this.disk.reclaim(false, (step) => this.relaxed(step));
    if (note) this.onNote?.(note);
  }
}
