import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool } from './spool.js';
import { readCommitRecord, RECORD_FILE } from './commit-record.js';
import type { DeadLetterInput } from './dead-letters.js';
import type { InboundMessage, SinkName } from '../core/message.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'format-test-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function msg(i: number): InboundMessage {
  return { topic: `plant/sensor/${i}`, payload: Buffer.from(`{"reading":${i},"marker":"M${String(i).padStart(5, '0')}"}`), qos: 1, retain: false, receivedAt: 1_700_000_000_000 + i };
}

/** Changes one byte of the file where `marker` is stored (it must occur once: a single copy of the row). */
function flipByteOf(file: string, marker: string): void {
  const bytes = readFileSync(file);
  const at = bytes.indexOf(marker);
  expect(at).toBeGreaterThanOrEqual(0);
  expect(bytes.indexOf(marker, at + 1)).toBe(-1);
  bytes[at + 2] ^= 0x01;
  writeFileSync(file, bytes);
}

describe('spool format 2: checksums and migration', () => {
  it('a row whose bytes changed on disk is dead-lettered as corrupt when leased, never handed to the sink', () => {
    const dir = tempDir();
    let spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file', 'pubsub'] });
    spool.append([msg(1), msg(2), msg(3)]);
    spool.close(); // checkpoints: the rows are in spool.db itself
    flipByteOf(path.join(dir, 'spool.db'), 'M00002');
    const seen: [SinkName, readonly DeadLetterInput[]][] = [];
    spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file', 'pubsub'], onCorrupt: (sink, items) => seen.push([sink, items]) });
    const leased = spool.lease('file', 10);
    expect(leased.map((m) => m.topic)).toEqual(['plant/sensor/1', 'plant/sensor/3']);
    expect(seen).toHaveLength(1);
    expect(seen[0]![0]).toBe('file');
    expect(seen[0]![1].map((d) => [d.message.topic, d.reason])).toEqual([['plant/sensor/2', 'corrupt']]);
    expect(seen[0]![1][0]!.detail).toMatch(/no longer match the checksum written at commit/);
    // Per sink: pubsub's lease finds it too, and dead-letters it for itself.
    expect(spool.lease('pubsub', 10)).toHaveLength(2);
    expect(spool.deadLetters.list().map((d) => [d.sink, d.reason])).toEqual([
      ['file', 'corrupt'],
      ['pubsub', 'corrupt'],
    ]);
    spool.ack('file', leased);
    spool.ack('pubsub', leased);
    expect(spool.stats().messages).toBe(0);
    spool.close();
  });

  it('leases past a batch in which every row is corrupt', () => {
    const dir = tempDir();
    let spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    spool.append([msg(1), msg(2), msg(3)]);
    spool.close();
    flipByteOf(path.join(dir, 'spool.db'), 'M00001');
    flipByteOf(path.join(dir, 'spool.db'), 'M00002');
    spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    expect(spool.lease('file', 2).map((m) => m.topic)).toEqual(['plant/sensor/3']);
    expect(spool.deadLetters.count()).toBe(2);
    spool.close();
  });

  it('a dlq replay carries a checksum again; rows without one (format 1) are delivered as they are', () => {
    const dir = tempDir();
    const spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    spool.append([msg(1)]);
    const [m] = spool.lease('file', 1);
    const crcAtCommit = spool.db.prepare('SELECT crc FROM messages').pluck().get();
    spool.deadLetter('file', [{ message: m!, reason: 'invalid', detail: 'test' }]);
    expect(spool.replayDeadLetters({ sink: 'file' })).toBe(1);
    expect(spool.db.prepare('SELECT crc FROM messages').pluck().all()).toEqual([crcAtCommit]);
    expect(spool.lease('file', 10).map((x) => x.messageId)).toEqual([m!.messageId]);
    spool.close();

    const again = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    again.db.prepare('UPDATE messages SET crc = NULL').run(); // as a format 1 row
    expect(again.lease('file', 10).map((x) => x.messageId)).toEqual([m!.messageId]);
    again.close();
  });

  it('migrates a format 1 spool: rows kept (unchecked), window journal dropped, a record written', () => {
    const dir = tempDir();
    const file = path.join(dir, 'spool.db');
    const old = new Database(file);
    old.pragma('journal_mode = WAL');
    old.exec(FORMAT_1_SQL);
    old.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', '1')").run();
    const insert = old.prepare('INSERT INTO messages (message_id, topic, payload, qos, retain, received_at, pending) VALUES (?, ?, ?, 1, 0, ?, 4)');
    insert.run('01JCZ8Q0K2W5V7M9N1P3R5T7X9', 'plant/a', Buffer.from('one'), 1_700_000_000_000);
    insert.run('01JCZ8Q0K2W5V7M9N1P3R5T7XA', 'plant/b', Buffer.from('two'), 1_700_000_000_001);
    old.prepare('INSERT INTO inbound_window_log (entries) VALUES (?)').run(Buffer.alloc(14, 1));
    old.close();
    expect(existsSync(path.join(dir, RECORD_FILE))).toBe(false);

    const spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    // Through format 2 to 3: each migration in turn.
    expect(spool.getMeta('schema_version')).toBe('3');
    expect(spool.getMeta('spool_id')).toMatch(/^[0-9a-f]{32}$/);
    expect(spool.openWarnings).toEqual([]);
    expect(spool.lease('file', 10).map((m) => m.payload.toString())).toEqual(['one', 'two']);
    expect(spool.db.prepare('SELECT COUNT(*) FROM inbound_window_log').pluck().get()).toBe(0);
    spool.append([msg(3)]);
    expect(spool.db.prepare('SELECT crc IS NOT NULL FROM messages ORDER BY seq').pluck().all()).toEqual([0, 0, 1]);
    spool.close();
    expect(readCommitRecord(path.join(dir, RECORD_FILE))).toMatchObject({ seq: 3 });
  });
});

/** The schema of format version 1, as the node wrote it before checksums and connection epochs. */
const FORMAT_1_SQL = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
  qos INTEGER NOT NULL, retain INTEGER NOT NULL, received_at INTEGER NOT NULL, pending INTEGER NOT NULL
);
CREATE TABLE dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
  message_id TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
  received_at INTEGER NOT NULL, dead_at INTEGER NOT NULL
);
CREATE INDEX dead_letters_sink ON dead_letters (sink, id);
CREATE TABLE inbound_window_log (id INTEGER PRIMARY KEY AUTOINCREMENT, entries BLOB NOT NULL);
`;
