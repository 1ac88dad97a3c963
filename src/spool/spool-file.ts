import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { SpoolVersionError, type ErrorCode } from '../core/errors.js';
import { MIGRATIONS, SCHEMA_SQL, SCHEMA_VERSION } from './schema.js';
import { checkSpoolFiles, CommitRecordFile, RECORD_FILE } from './commit-record.js';
import { DEFAULT_MIN_FREE_BYTES, DiskSpace, type StatFs } from './disk-space.js';

/** What opening the file takes of the spool's options (spool.ts, SpoolOptions, says what each means). */
export interface SpoolFileOptions {
  dir: string;
  sync?: 'full' | 'normal';
  minFreeDiskBytes?: number;
  statfs?: StatFs;
  acceptLoss?: boolean;
}

/** spool.db opened and checked, with its commit record and the watch over its disk. */
export interface SpoolFile {
  db: Database.Database;
  path: string;
  record: CommitRecordFile;
  disk: DiskSpace;
  /** The checks' findings for the log: a loss accepted, a commit record missing (commit-record.ts). */
  warnings: { code: ErrorCode; message: string }[];
}

/**
 * Opens `dir`/spool.db: checks it against its commit record before SQLite touches it, sets the pragmas,
 * creates or migrates the tables, and writes the record again from what the spool holds now (checked, or
 * accepted as it is). Throws SpoolDamagedError or SpoolVersionError, the file closed again.
 */
export function openSpoolFile(options: SpoolFileOptions, monotonic: () => number): SpoolFile {
  mkdirSync(options.dir, { recursive: true });
  const file = path.join(options.dir, 'spool.db');
  // Before SQLite opens the files for writing (which would checkpoint, or delete, a damaged WAL).
  const warnings = checkSpoolFiles(file, options.acceptLoss === true);
  const db = new Database(file);
  // Before WAL mode writes the first page of a new file: only then does it apply without a VACUUM (disk-space.ts).
  db.pragma('auto_vacuum = INCREMENTAL');
  db.pragma('journal_mode = WAL');
  // A write-ahead log that grew (a long `dlq` read held checkpoints back, a VACUUM) is cut back to this at the
  // next checkpoint; in steady use it stays near 4 MiB (1,000 pages, SQLite's autocheckpoint) and is not touched.
  db.pragma(`journal_size_limit = ${16 * 1024 * 1024}`);
  db.pragma(`synchronous = ${options.sync === 'normal' ? 'NORMAL' : 'FULL'}`);
  // The dlq commands open the same file while the node runs; wait for its write lock instead of failing.
  db.pragma('busy_timeout = 5000');
  try {
    migrate(db, file);
    const spoolId = db.prepare("SELECT value FROM meta WHERE key = 'spool_id'").pluck().get() as string;
    const committed = (db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").pluck().get() as number | undefined) ?? 0;
    const record = CommitRecordFile.create(path.join(options.dir, RECORD_FILE), spoolId, committed);
    const disk = new DiskSpace(db, {
      dir: options.dir,
      file,
      minFreeBytes: options.minFreeDiskBytes ?? DEFAULT_MIN_FREE_BYTES,
      statfs: options.statfs,
      monotonic,
    });
    return { db, path: file, record, disk, warnings };
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * Creates the tables of a new spool, or brings one of an older format version to this one (MIGRATIONS, one
 * transaction each); refuses a version it does not know rather than misread its rows. Every spool gets a
 * random id, which the commit record names.
 */
function migrate(db: Database.Database, file: string): void {
  db.exec(SCHEMA_SQL);
  db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run('schema_version', String(SCHEMA_VERSION));
  let version = Number(db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get());
  while (version < SCHEMA_VERSION && MIGRATIONS[version] !== undefined) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version]!);
      db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(version + 1));
    })();
    version += 1;
  }
  if (version !== SCHEMA_VERSION) throw new SpoolVersionError(file, version, SCHEMA_VERSION);
  db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run('spool_id', randomBytes(16).toString('hex'));
}
