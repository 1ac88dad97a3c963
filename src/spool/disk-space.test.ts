import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool, type SourcedMessage } from './spool.js';
import { SCHEMA_SQL, SCHEMA_VERSION } from './schema.js';
import { formatBytes, type StatFs } from './disk-space.js';
import { SpoolFullError } from '../core/errors.js';
import { serviceAvailable } from '../../test/helpers/skip.js';
import { fillDisk, isRoot, mountTmpfs, unmountTmpfs } from '../../test/helpers/disk.js';

const MiB = 1024 * 1024;
const dirs: string[] = [];
const mounts: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'disk-space-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const m of mounts.splice(0)) unmountTmpfs(m);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A disk of `total` bytes holding only the spool's files: statfs's free space is what they leave. */
function smallDisk(dir: string, total: number): StatFs {
  return () => {
    const used = readdirSync(dir).reduce((n, f) => n + statSync(path.join(dir, f)).size, 0);
    return { bsize: 4096, blocks: Math.floor(total / 4096), bavail: Math.max(0, Math.floor((total - used) / 4096)) };
  };
}

function msgs(from: number, n: number, size: number): SourcedMessage[] {
  return Array.from({ length: n }, (_, i) => ({ topic: `plant/sensor/${from + i}`, payload: Buffer.alloc(size, 7), qos: 1 as const, retain: false, receivedAt: 1_700_000_000_000 + from + i }));
}

function fileSize(dir: string): number {
  return statSync(path.join(dir, 'spool.db')).size;
}

/** Appends groups until the spool refuses one; returns the refusal and what was stored. */
function fillUntilFull(spool: Spool, disk: StatFs, floor: number, size: number): { err: SpoolFullError; stored: number; lowest: number } {
  let stored = 0;
  let lowest = Number.POSITIVE_INFINITY;
  for (let g = 0; g < 300; g++) {
    try {
      spool.append(msgs(stored, 100, size));
    } catch (err) {
      if (err instanceof SpoolFullError) return { err, stored, lowest };
      throw err;
    }
    stored += 100;
    const s = disk('');
    lowest = Math.min(lowest, s.bavail * s.bsize + spool.stats().reusableBytes - floor);
  }
  throw new Error('the spool never became full');
}

describe('spool disk space (SPOOL_MIN_FREE_BYTES)', () => {
  it('a spool that filled a small disk takes messages again once drained: free pages count, and space is given back', () => {
    const dir = tempDir();
    const floor = 8 * MiB;
    const disk = smallDisk(dir, 40 * MiB);
    const spool = Spool.open({ dir, maxBytes: 1e12, sinks: ['pubsub'], minFreeDiskBytes: floor, statfs: disk });
    const { err, stored, lowest } = fillUntilFull(spool, disk, floor, 4000);
    expect(stored).toBeGreaterThan(5000);
    expect(err.message).toMatch(new RegExp(`^spool is full: disk: .* free on ${dir}.*SPOOL_MIN_FREE_BYTES 8 MiB`));
    // Checked before every commit with the commit's size: no burst of commits went past the floor (a 2 s cache did).
    expect(lowest).toBeGreaterThanOrEqual(-MiB);
    expect(spool.stats()).toMatchObject({ messages: stored });
    const peak = fileSize(dir);

    for (;;) {
      const batch = spool.lease('pubsub', 1000);
      if (batch.length === 0) break;
      spool.ack('pubsub', batch);
    }
    expect(spool.stats()).toMatchObject({ messages: 0, full: false, fullReason: undefined });
    spool.db.pragma('wal_checkpoint(PASSIVE)');
    // Given back to the file system as the backlog drained, but for a reserve of 4 MiB (plus up to 1 MiB) kept for reuse.
    expect(fileSize(dir)).toBeLessThan(6 * MiB);
    expect(fileSize(dir)).toBeLessThan(peak / 4);
    expect(spool.append(msgs(0, 100, 4000)).every((r) => r.stored)).toBe(true);
    spool.close();

    // After a restart too.
    const again = Spool.open({ dir, maxBytes: 1e12, sinks: ['pubsub'], minFreeDiskBytes: floor, statfs: disk });
    expect(again.isFull()).toBe(false);
    expect(again.append(msgs(100, 100, 4000)).every((r) => r.stored)).toBe(true);
    again.close();
  });

  it('with room on the disk, a file that stayed small keeps its free pages for the next rows; one grown past 64 MiB shrinks', () => {
    const drain = (spool: Spool) => {
      for (;;) {
        const batch = spool.lease('pubsub', 1000);
        if (batch.length === 0) return;
        spool.ack('pubsub', batch);
      }
    };
    const small = tempDir();
    let spool = Spool.open({ dir: small, maxBytes: 1e12, sinks: ['pubsub'], minFreeDiskBytes: MiB, statfs: smallDisk(small, 100 * 1024 * MiB) });
    for (let g = 0; g < 5; g++) spool.append(msgs(g * 1000, 1000, 4000));
    spool.db.pragma('wal_checkpoint(PASSIVE)');
    const peak = fileSize(small);
    expect(peak).toBeGreaterThan(16 * MiB);
    drain(spool);
    spool.db.pragma('wal_checkpoint(PASSIVE)');
    expect(fileSize(small)).toBe(peak);
    spool.close();

    const large = tempDir();
    spool = Spool.open({ dir: large, maxBytes: 1e12, sinks: ['pubsub'], minFreeDiskBytes: MiB, statfs: smallDisk(large, 100 * 1024 * MiB) });
    for (let g = 0; g < 18; g++) spool.append(msgs(g * 1000, 1000, 4000));
    spool.db.pragma('wal_checkpoint(PASSIVE)');
    expect(fileSize(large)).toBeGreaterThan(64 * MiB);
    drain(spool);
    spool.db.pragma('wal_checkpoint(PASSIVE)');
    expect(fileSize(large)).toBeLessThan(6 * MiB);
    spool.close();
  });

  it('a large file keeps its pages while more than 8 MiB of live data is behind the free ones, and shrinks once drained', () => {
    const dir = tempDir();
    const spool = Spool.open({ dir, maxBytes: 1e12, sinks: ['pubsub'], minFreeDiskBytes: MiB, statfs: smallDisk(dir, 100 * 1024 * MiB) });
    for (let g = 0; g < 40; g++) spool.append(msgs(g * 1000, 1000, 4000)); // about 160 MiB
    spool.db.pragma('wal_checkpoint(PASSIVE)');
    const peak = fileSize(dir);
    expect(peak).toBeGreaterThan(150 * MiB);
    // Three fifths delivered: more free pages than live ones, but some 64 MiB of live data still behind them.
    for (let k = 0; k < 24; k++) spool.ack('pubsub', spool.lease('pubsub', 1000));
    spool.db.pragma('wal_checkpoint(PASSIVE)');
    expect(fileSize(dir)).toBe(peak);
    for (;;) {
      const batch = spool.lease('pubsub', 1000);
      if (batch.length === 0) break;
      spool.ack('pubsub', batch);
    }
    spool.db.pragma('wal_checkpoint(PASSIVE)');
    expect(fileSize(dir)).toBeLessThan(6 * MiB);
    spool.close();
  });

  it('names the cause: the disk (with what is free where) or SPOOL_MAX_BYTES, and warns at open on a disk smaller than the floor', () => {
    const dir = tempDir();
    const tiny = Spool.open({ dir, maxBytes: 1e12, sinks: ['file'], minFreeDiskBytes: 256 * MiB, statfs: smallDisk(dir, 20 * MiB) });
    expect(tiny.stats().fullReason).toMatch(new RegExp(`^disk: 19(\\.\\d)? MiB free on ${dir}.*, below SPOOL_MIN_FREE_BYTES 256 MiB$`));
    expect(tiny.openWarnings.map((w) => w.code)).toEqual(['SPOOL_DISK_TOO_SMALL', 'SPOOL_FULL_AT_START']);
    expect(tiny.openWarnings[0]?.message).toContain('holds 20 MiB in all, not more than SPOOL_MIN_FREE_BYTES 256 MiB');
    expect(tiny.openWarnings[1]?.message).toMatch(/^the spool is full at start \(disk: .*\): messages are not acknowledged until there is room$/);
    expect(() => tiny.append(msgs(0, 1, 10))).toThrow(/^spool is full: disk: /);
    tiny.close();

    const small = Spool.open({ dir, maxBytes: 1e12, sinks: ['file'], minFreeDiskBytes: 4 * MiB, statfs: smallDisk(dir, 20 * MiB) });
    expect(small.openWarnings).toEqual([]);
    expect(small.append(msgs(0, 1, 10))[0].stored).toBe(true);
    small.close();

    const capped = Spool.open({ dir: tempDir(), maxBytes: 1024, sinks: ['file'], minFreeDiskBytes: MiB });
    capped.append(msgs(0, 1, 2000));
    expect(capped.stats().fullReason).toMatch(/^SPOOL_MAX_BYTES reached: 2 KiB of messages and dead letters held, limit 1 KiB$/);
    capped.close();
    expect([formatBytes(0), formatBytes(900), formatBytes(1536), formatBytes(64 * MiB - 1), formatBytes(1.5 * 1024 * MiB)]).toEqual([
      '0 bytes',
      '900 bytes',
      '1.5 KiB',
      '63 MiB',
      '1.5 GiB',
    ]);
  });

  it('an older spool.db (no incremental vacuum) is switched at open when small, and after its backlog drained when large', () => {
    const makeOld = (dir: string, rows: number, size: number) => {
      const db = new Database(path.join(dir, 'spool.db'));
      db.pragma('journal_mode = WAL');
      db.exec(SCHEMA_SQL);
      db.prepare('INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)').run('schema_version', String(SCHEMA_VERSION), 'spool_id', 'f'.repeat(32));
      const insert = db.prepare('INSERT INTO messages (message_id, topic, payload, qos, retain, received_at, pending) VALUES (?, ?, ?, 1, 0, 0, 1)');
      db.transaction(() => {
        for (let i = 0; i < rows; i++) insert.run(`id${i}`, 't', Buffer.alloc(size, 1));
      })();
      expect(db.pragma('auto_vacuum', { simple: true })).toBe(0);
      db.close();
    };
    const small = tempDir();
    makeOld(small, 100, 1000);
    let spool = Spool.open({ dir: small, maxBytes: 1e12, sinks: ['pubsub'], minFreeDiskBytes: MiB, acceptLoss: true });
    expect(spool.db.pragma('auto_vacuum', { simple: true })).toBe(2);
    expect(spool.openNotes.join('\n')).toContain('now gives freed space back to the file system');
    expect(spool.stats().messages).toBe(100);
    spool.close();

    const large = tempDir();
    makeOld(large, 1100, 64 * 1024);
    const notes: string[] = [];
    spool = Spool.open({ dir: large, maxBytes: 1e12, sinks: ['pubsub'], minFreeDiskBytes: MiB, acceptLoss: true, onNote: (n) => notes.push(n) });
    expect(spool.db.pragma('auto_vacuum', { simple: true })).toBe(0);
    expect(spool.openNotes.join('\n')).toContain('switched to giving space back to the file system once its backlog has drained');
    for (;;) {
      const batch = spool.lease('pubsub', 100);
      if (batch.length === 0) break;
      spool.ack('pubsub', batch);
    }
    expect(spool.db.pragma('auto_vacuum', { simple: true })).toBe(2);
    expect(notes.join('\n')).toContain('now gives freed space back to the file system');
    spool.db.pragma('wal_checkpoint(PASSIVE)');
    expect(fileSize(large)).toBeLessThan(6 * MiB);
    spool.close();
  });
});

const root = serviceAvailable('root (to mount a tmpfs)', isRoot, 'run the tests as root, as CI does');

describe.runIf(root)('spool on a real full disk (tmpfs)', () => {
  it('a commit refused with SQLITE_FULL changes no counter, however often it is retried; they match COUNT(*) throughout', () => {
    const dir = mountTmpfs('16m');
    mounts.push(dir);
    const spool = Spool.open({ dir, maxBytes: 1e12, sinks: ['pubsub', 'file'], minFreeDiskBytes: MiB });
    for (let g = 0; g < 20; g++) spool.append(msgs(g * 100, 100, 1000));
    const truth = () => {
      const count = (sql: string) => spool.db.prepare(sql).pluck().get() as number;
      return {
        messages: count('SELECT COUNT(*) FROM messages'),
        pending: { pubsub: count('SELECT COUNT(*) FROM messages WHERE pending & 1'), file: count('SELECT COUNT(*) FROM messages WHERE pending & 4') },
        deadLetters: count('SELECT COUNT(*) FROM dead_letters'),
      };
    };
    const before = spool.stats();
    expect(before).toMatchObject(truth());
    // An empty write-ahead log must grow for the next commit, and the disk has no byte left for it.
    spool.db.pragma('wal_checkpoint(TRUNCATE)');
    const filler = fillDisk(dir);
    const pubsub = spool.lease('pubsub', 1000);
    const file = spool.lease('file', 1000);
    const unchanged = { messages: before.messages, bytes: before.bytes, pending: before.pending, deadLetters: 0 };
    for (let attempt = 0; attempt < 5; attempt++) {
      expect(() => spool.ack('pubsub', pubsub)).toThrow(/database or disk is full/);
      expect(spool.stats()).toMatchObject(unchanged);
      expect(() => spool.deadLetter('file', file.map((m) => ({ message: m, reason: 'invalid', detail: 'test' })))).toThrow(/database or disk is full/);
      expect(spool.stats()).toMatchObject(unchanged);
      expect(() => spool.append(msgs(5000, 10, 100))).toThrow(SpoolFullError);
      expect(spool.stats()).toMatchObject(unchanged);
    }
    const during = spool.stats();
    expect(during).toMatchObject({ ...truth(), full: true });
    expect(during.fullReason).toMatch(/^disk: /);

    rmSync(filler);
    spool.ack('pubsub', pubsub);
    spool.deadLetter('file', file.map((m) => ({ message: m, reason: 'invalid', detail: 'test' })));
    const after = spool.stats();
    expect(after).toMatchObject(truth());
    expect(after).toMatchObject({ messages: 1000, pending: { pubsub: 1000, file: 1000 }, deadLetters: 1000 });
    expect(after.fullReason).toBeUndefined();
    expect(after.bytes).toBe(before.bytes);
    spool.close();
  });
});
