import { afterEach, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool } from './spool.js';
import { readCommitRecord, RECORD_FILE } from './commit-record.js';
import { SpoolDamagedError } from '../core/errors.js';
import type { InboundMessage } from '../core/message.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'record-test-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function msg(i: number): InboundMessage {
  return { topic: `plant/sensor/${i % 8}`, payload: Buffer.from(`{"seq":${i},"pad":"${'x'.repeat(150)}"}`), qos: 1, retain: false, receivedAt: 1_700_000_000_000 + i };
}

const open = (dir: string, acceptLoss = false) => Spool.open({ dir, maxBytes: 1e12, sinks: ['file'], acceptLoss });

/**
 * The files a SIGKILL leaves: 600 messages committed in 30 transactions, still in the WAL (far below SQLite's
 * checkpoint at 1,000 pages), copied while the spool is open. No -shm: SQLite rebuilds it from the WAL.
 */
function crashImage(): { dir: string; db: string; wal: string } {
  const live = tempDir();
  const spool = open(live);
  for (let g = 0; g < 30; g++) spool.append(Array.from({ length: 20 }, (_, i) => msg(g * 20 + i)));
  const dir = tempDir();
  for (const f of ['spool.db', 'spool.db-wal', RECORD_FILE]) copyFileSync(path.join(live, f), path.join(dir, f));
  spool.close();
  return { dir, db: path.join(dir, 'spool.db'), wal: path.join(dir, 'spool.db-wal') };
}

function refusal(dir: string): SpoolDamagedError {
  try {
    open(dir).close();
  } catch (err) {
    if (err instanceof SpoolDamagedError) return err;
    throw err;
  }
  throw new Error('the spool opened');
}

describe('commit record: a spool that holds less than was committed is refused at open', () => {
  it('records the seq of each commit, and an undamaged crash image opens with every message', () => {
    const { dir, wal } = crashImage();
    expect(statSync(wal).size).toBeGreaterThan(0);
    expect(readCommitRecord(path.join(dir, RECORD_FILE))).toMatchObject({ seq: 600 });
    const spool = open(dir);
    expect(spool.openWarnings).toEqual([]);
    expect(spool.stats().messages).toBe(600);
    spool.close();
  });

  it('a deleted WAL: refused, naming spool.db, the missing WAL and how many messages', () => {
    const { dir, db, wal } = crashImage();
    rmSync(wal);
    const err = refusal(dir);
    expect(err.code).toBe('SPOOL_DAMAGED');
    expect(err.message).toContain(db);
    expect(err.message).toMatch(/holds messages up to seq 0, but messages up to seq 600 were committed/);
    expect(err.message).toContain(`its write-ahead log ${wal} is missing`);
    expect(err.context).toMatchObject({ file: db, committedSeq: 600, foundSeq: 0, missing: 600 });
  });

  it('a truncated WAL: refused, and the check leaves the WAL as it found it', () => {
    const { dir, wal } = crashImage();
    const half = Math.floor(statSync(wal).size / 2);
    truncateSync(wal, half);
    const err = refusal(dir);
    expect(err.message).toMatch(/holds messages up to seq \d+, but messages up to seq 600 were committed/);
    expect((err.context as { foundSeq: number }).foundSeq).toBeGreaterThan(0);
    expect(statSync(wal).size).toBe(half);
  });

  it('spool.db emptied with its WAL kept: refused before SQLite (which would delete the WAL) opens anything', () => {
    const { dir, db, wal } = crashImage();
    const walBytes = statSync(wal).size;
    writeFileSync(db, '');
    const err = refusal(dir);
    expect(err.message).toContain(`${db} is empty (0 bytes) but its write-ahead log ${wal} holds ${walBytes} bytes`);
    expect(statSync(wal).size).toBe(walBytes);
    rmSync(wal);
    expect(refusal(dir).message).toContain(`records messages committed up to seq 600: they are all gone`);
  });

  it('spool.db replaced by another spool, or a damaged record: refused', () => {
    const { dir, db } = crashImage();
    const other = tempDir();
    const spool = open(other);
    spool.append(Array.from({ length: 700 }, (_, i) => msg(i)));
    spool.close();
    rmSync(`${db}-wal`, { force: true });
    copyFileSync(path.join(other, 'spool.db'), db);
    expect(refusal(dir).message).toMatch(/is another spool \(id [0-9a-f]{32}\) than the one .* was written for/);

    const second = crashImage();
    writeFileSync(path.join(second.dir, RECORD_FILE), 'mqtt-ingest spool commit record 1\nspool 00\n');
    expect(refusal(second.dir).message).toContain('is damaged (its check value does not match)');
  });

  it('with acceptLoss: starts, says what was lost, keeps a copy of the damaged WAL, and the next start is clean', () => {
    const { dir, wal } = crashImage();
    truncateSync(wal, Math.floor(statSync(wal).size / 2));
    const spool = open(dir, true);
    expect(spool.openWarnings).toHaveLength(1);
    expect(spool.openWarnings[0]?.code).toBe('SPOOL_LOSS_ACCEPTED');
    expect(spool.openWarnings[0]?.message).toMatch(/^starting although the spool is damaged \(loss accepted\): .* up to \d+ acknowledged messages are missing/);
    expect(spool.openWarnings[0]?.message).toContain('kept for inspection');
    expect(readdirSync(dir).some((f) => f.startsWith('spool.db-wal.damaged-'))).toBe(true);
    const held = spool.stats().messages;
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThan(600);
    spool.append([msg(1000)]);
    spool.close();
    const again = open(dir);
    expect(again.openWarnings).toEqual([]);
    expect(again.stats().messages).toBe(held + 1);
    again.close();
  });

  it('with acceptLoss beside an emptied spool.db: the WAL is moved aside, not deleted by SQLite', () => {
    const { dir, db, wal } = crashImage();
    const walBytes = statSync(wal).size;
    writeFileSync(db, '');
    const spool = open(dir, true);
    expect(spool.stats().messages).toBe(0);
    spool.close();
    const aside = readdirSync(dir).find((f) => f.startsWith('spool.db-wal.damaged-'));
    expect(aside).toBeDefined();
    expect(statSync(path.join(dir, aside!)).size).toBe(walBytes);
  });

  it('a missing record: starts with a warning that this start could not be checked, and writes a new one', () => {
    const { dir } = crashImage();
    rmSync(path.join(dir, RECORD_FILE));
    const spool = open(dir);
    expect(spool.openWarnings[0]?.code).toBe('SPOOL_RECORD_MISSING');
    expect(spool.openWarnings[0]?.message).toMatch(/spool\.committed was missing: this start could not check .* for lost commits/);
    expect(spool.stats().messages).toBe(600);
    spool.close();
    expect(existsSync(path.join(dir, RECORD_FILE))).toBe(true);
    expect(readCommitRecord(path.join(dir, RECORD_FILE))).toMatchObject({ seq: 600 });
  });

  it('a new spool in an empty directory starts without a word', () => {
    const dir = tempDir();
    const spool = open(dir);
    expect(spool.openWarnings).toEqual([]);
    spool.close();
    expect(readCommitRecord(path.join(dir, RECORD_FILE))).toMatchObject({ seq: 0 });
  });
});
