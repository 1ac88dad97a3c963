/**
 * The source table on disk (`DATA_DIR/sources.db`), so that a restart does not forget which topics were seen: a
 * topic that went quiet before a restart is still reported silent after it. Saves come in batches (every
 * SAVE_INTERVAL_MS and at stop) with synchronous=NORMAL: a crash or SIGKILL loses at most the last interval's
 * changes, and nothing here holds messages, so that is all it loses.
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import type { SourceEntry } from './tracker.js';

export const SAVE_INTERVAL_MS = 10_000;

type Row = { topic: string; last_seen_at: number; rate: number; rate_at: number; messages: number };

export class SourceStore {
  private constructor(
    private readonly db: Database.Database,
    private readonly upsert: Database.Statement<[string, number, number, number, number]>,
  ) {}

  /** Opens (or creates) the file; throws when it is not a source table (damaged, or some other file). */
  static open(file: string): SourceStore {
    const db = new Database(file);
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.exec(
        'CREATE TABLE IF NOT EXISTS sources (topic TEXT PRIMARY KEY, last_seen_at INTEGER NOT NULL, rate REAL NOT NULL, ' +
          'rate_at INTEGER NOT NULL, messages INTEGER NOT NULL) WITHOUT ROWID',
      );
      const check = db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new Error(`quick_check: ${String(check)}`);
      const upsert = db.prepare<[string, number, number, number, number]>(
        'INSERT INTO sources (topic, last_seen_at, rate, rate_at, messages) VALUES (?, ?, ?, ?, ?) ' +
          'ON CONFLICT (topic) DO UPDATE SET last_seen_at = excluded.last_seen_at, rate = excluded.rate, ' +
          'rate_at = excluded.rate_at, messages = excluded.messages',
      );
      return new SourceStore(db, upsert);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /**
   * Moves a file that cannot be used aside (with its write-ahead log) as `<file>.damaged-<time>`, so that the
   * node starts with an empty table and the file stays for a look; returns the new name.
   */
  static setAside(file: string): string {
    const aside = `${file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) {
      if (fs.existsSync(file + suffix)) fs.renameSync(file + suffix, aside + suffix);
    }
    return aside;
  }

  /** Every saved entry; rows whose values are not numbers (a hand-edited file) are left out. */
  load(): Omit<SourceEntry, 'dirty'>[] {
    const rows = this.db.prepare('SELECT topic, last_seen_at, rate, rate_at, messages FROM sources').all() as Row[];
    return rows
      .filter((r) => typeof r.topic === 'string' && [r.last_seen_at, r.rate, r.rate_at, r.messages].every((v) => Number.isFinite(v)))
      .map((r) => ({ topic: r.topic, lastSeenAt: r.last_seen_at, rate: r.rate, rateAt: r.rate_at, messages: r.messages }));
  }

  /** Writes the entries in one transaction. */
  save(entries: readonly SourceEntry[]): void {
    if (entries.length === 0) return;
    this.db.transaction(() => {
      for (const e of entries) this.upsert.run(e.topic, e.lastSeenAt, e.rate, e.rateAt, e.messages);
    })();
  }

  close(): void {
    this.db.close();
  }
}
