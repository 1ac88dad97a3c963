import Database from 'better-sqlite3';
import { closeSync, copyFileSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { crc32c } from '../core/crc32c.js';
import { SpoolDamagedError, type ErrorCode } from '../core/errors.js';

/**
 * The commit record: a small file beside spool.db, outside SQLite and its write-ahead log, holding the spool's
 * id and the highest message seq the node knows it committed. SQLite cannot tell that its WAL was deleted or
 * truncated, or that spool.db was emptied or swapped: it opens what is left, and the messages committed in the
 * lost part are gone without a word. The node can tell: at open, a spool whose AUTOINCREMENT counter
 * (sqlite_sequence, which only grows and lives in the same pages as the rows) is below the record has lost
 * commits, and the node refuses to start (SpoolDamagedError) unless told to accept the loss.
 *
 * Soundness: the record must never claim more than the spool durably holds, or a healthy spool would be
 * refused. It is written after each commit returns, with the seq of that commit: with SPOOL_SYNC=full the WAL
 * was fsynced before, so whatever reaches the disk of the record is on disk in the WAL already. The record is
 * not fsynced per commit (an overwrite in place of ~100 bytes, a few µs; an fsync would double the cost of a
 * commit): after a power cut it may be behind, which only narrows what is checked. With SPOOL_SYNC=normal a
 * power cut can lose commits from the WAL that the record names; the node then refuses to start and says how
 * many acknowledged messages were lost, which that setting allows but should not hide.
 *
 * The record lags neither a lost WAL (it is updated at every commit, not at checkpoints, so it covers exactly
 * what only the WAL held) nor an emptied spool.db. Rows deleted by acknowledgements do not lower the counter,
 * so the check holds whatever was delivered since; `dlq replay` (another process) only raises it.
 */
export const RECORD_FILE = 'spool.committed';

const HEADER = 'mqtt-ingest spool commit record 1\n';
const SEQ_DIGITS = 20;

export interface CommitRecord {
  spoolId: string;
  seq: number;
}

/** The record's bytes: fixed length, so that each update overwrites the whole of it in place. */
function encode(spoolId: string, seq: number): Buffer {
  const body = `${HEADER}spool ${spoolId}\nseq ${String(seq).padStart(SEQ_DIGITS, '0')}\n`;
  const crc = crc32c(Buffer.from(body, 'latin1')).toString(16).padStart(8, '0');
  return Buffer.from(`${body}crc ${crc}\n`, 'latin1');
}

/** The record in `file`; undefined when there is none; 'unreadable' when it is damaged. */
export function readCommitRecord(file: string): CommitRecord | 'unreadable' | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const m = /^mqtt-ingest spool commit record 1\nspool ([0-9a-f]{32})\nseq (\d{20})\ncrc ([0-9a-f]{8})\n$/.exec(text);
  if (!m) return 'unreadable';
  const record = { spoolId: m[1]!, seq: Number(m[2]) };
  return encode(record.spoolId, record.seq).toString('latin1') === text ? record : 'unreadable';
}

/** The open record of a running spool: created whole at open, then overwritten in place after each commit. */
export class CommitRecordFile {
  private readonly buf: Buffer;
  private readonly seqAt: number;
  private readonly crcAt: number;
  private fd: number | undefined;

  /** Writes the record beside the spool (temporary file, fsync, rename, fsync of the directory). */
  static create(file: string, spoolId: string, seq: number): CommitRecordFile {
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, encode(spoolId, seq));
    const fd = openSync(tmp, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    syncDirectory(path.dirname(file));
    return new CommitRecordFile(file, spoolId, seq);
  }

  private constructor(
    readonly file: string,
    spoolId: string,
    private seq: number,
  ) {
    this.buf = encode(spoolId, seq);
    const text = this.buf.toString('latin1');
    this.seqAt = text.indexOf('\nseq ') + 5;
    this.crcAt = text.indexOf('\ncrc ') + 5;
    this.fd = openSync(file, 'r+');
  }

  /**
   * Messages up to `seq` are committed. Call only after the commit returned. A write that fails leaves the
   * record behind, which is safe (it never claims more than was committed); the next commit writes it again.
   */
  update(seq: number): void {
    if (seq <= this.seq || this.fd === undefined) return;
    this.seq = seq;
    this.buf.write(String(seq).padStart(SEQ_DIGITS, '0'), this.seqAt, 'latin1');
    const crc = crc32c(this.buf.subarray(0, this.crcAt - 4));
    this.buf.write(crc.toString(16).padStart(8, '0'), this.crcAt, 'latin1');
    try {
      writeSync(this.fd, this.buf, 0, this.buf.length, 0);
    } catch {
      // Behind until the next commit: never ahead.
    }
  }

  /** Flushes the record to disk (a clean stop: the next start checks against exactly this). */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function sizeOf(file: string): number | undefined {
  try {
    return statSync(file).size;
  } catch {
    return undefined;
  }
}

/**
 * What the database holds, read through a read-only connection: it changes no file (a read-write connection
 * would checkpoint and delete the WAL at close, destroying what an operator might still recover).
 */
function inspect(dbFile: string): { seq: number; spoolId: string | undefined } {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const tables = new Set(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[]);
    const seq = tables.has('sqlite_sequence')
      ? ((db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").pluck().get() as number | undefined) ?? 0)
      : 0;
    const spoolId = tables.has('meta') ? (db.prepare("SELECT value FROM meta WHERE key = 'spool_id'").pluck().get() as string | undefined) : undefined;
    return { seq, spoolId };
  } finally {
    db.close();
  }
}

/**
 * Checks spool.db and its WAL against the commit record before SQLite opens them for writing (spool.ts).
 * Throws SpoolDamagedError naming the file and what is missing; with `acceptLoss` it returns the same words
 * as a warning instead, after copying the damaged WAL aside (`spool.db-wal.damaged-<time>`).
 */
export function checkSpoolFiles(dbFile: string, acceptLoss: boolean): { code: ErrorCode; message: string }[] {
  const recordFile = path.join(path.dirname(dbFile), RECORD_FILE);
  const walFile = `${dbFile}-wal`;
  const record = readCommitRecord(recordFile);
  const dbBytes = sizeOf(dbFile);
  const walBytes = sizeOf(walFile) ?? 0;
  const committed = typeof record === 'object' ? record.seq : 0;
  const context: Record<string, unknown> = { file: dbFile, record: recordFile, committedSeq: committed, walBytes };
  let problem: string | undefined;
  let warning: string | undefined;
  let unreadable = false;
  if (!dbBytes) {
    const state = dbBytes === undefined ? 'is missing' : 'is empty (0 bytes)';
    // SQLite itself deletes a WAL it finds beside an empty or missing database, even on a read-only open:
    // this is decided from the file sizes alone, before any connection.
    if (walBytes > 0) problem = `${dbFile} ${state} but its write-ahead log ${walFile} holds ${walBytes} bytes of commits, which SQLite would discard`;
    else if (committed > 0) problem = `${dbFile} ${state}, but ${recordFile} records messages committed up to seq ${committed}: they are all gone`;
    else if (record === 'unreadable') problem = `${recordFile} is damaged (its check value does not match) and ${dbFile} ${state}`;
  } else {
    let found: { seq: number; spoolId: string | undefined } | undefined;
    try {
      found = inspect(dbFile);
    } catch (err) {
      // Not a database, or a damaged one; any other error (permissions, I/O) is the caller's to report.
      const code = (err as { code?: string }).code ?? '';
      if (code !== 'SQLITE_NOTADB' && !code.startsWith('SQLITE_CORRUPT')) throw err;
      unreadable = true;
      problem = `${dbFile} cannot be read as a SQLite database (${(err as Error).message})`;
    }
    if (found) {
      context.foundSeq = found.seq;
      if (record === 'unreadable') {
        problem = `${recordFile} is damaged (its check value does not match): whether ${dbFile} holds every committed message cannot be checked`;
      } else if (record && found.seq < record.seq) {
        context.missing = record.seq - found.seq;
        const wal = walBytes > 0 ? `its write-ahead log ${walFile} has ${walBytes} bytes` : `its write-ahead log ${walFile} is missing or empty`;
        problem =
          `${dbFile} holds messages up to seq ${found.seq}, but messages up to seq ${record.seq} were committed (${recordFile}); ${wal}: ` +
          `up to ${record.seq - found.seq} acknowledged messages are missing (a deleted or truncated ${path.basename(walFile)}, damaged bytes in it, ` +
          `or ${path.basename(dbFile)} replaced by an older copy)`;
      } else if (record && found.spoolId !== undefined && found.spoolId !== record.spoolId) {
        problem = `${dbFile} is another spool (id ${found.spoolId}) than the one ${recordFile} was written for (id ${record.spoolId}): the spool's messages are not in it`;
      } else if (!record && found.spoolId !== undefined) {
        warning = `${recordFile} was missing: this start could not check ${dbFile} for lost commits; a new record was written`;
      }
    }
  }
  if (!problem) return warning ? [{ code: 'SPOOL_RECORD_MISSING', message: warning }] : [];
  if (!acceptLoss) {
    throw new SpoolDamagedError(
      `the spool is damaged: ${problem}. Refusing to start, to keep the files as they are; restore the missing file if a copy exists, ` +
        'or start once with SPOOL_ACCEPT_LOSS=true to accept the loss and go on with what the spool holds',
      context,
    );
  }
  // Accepted: keep what is damaged for inspection. SQLite checkpoints what it can read of a WAL and then deletes
  // it (a copy is kept); beside an empty database it would delete it unread, and an unreadable database is
  // moved aside whole (the node starts with a new, empty spool).
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const kept: string[] = [];
  if (walBytes > 0) {
    const aside = `${walFile}.damaged-${stamp}`;
    if (!dbBytes || unreadable) renameSync(walFile, aside);
    else copyFileSync(walFile, aside);
    kept.push(aside);
  }
  if (unreadable) {
    const aside = `${dbFile}.damaged-${stamp}`;
    renameSync(dbFile, aside);
    rmSync(`${dbFile}-shm`, { force: true });
    kept.push(aside);
  }
  const message = `starting although the spool is damaged (loss accepted): ${problem}${kept.length ? `; kept for inspection: ${kept.join(', ')}` : ''}`;
  return [{ code: 'SPOOL_LOSS_ACCEPTED', message }];
}
