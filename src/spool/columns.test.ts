import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool, messageBytes } from './spool.js';
import { rowChecksum } from './checksum.js';
import { crc32c } from '../core/crc32c.js';
import type { DeadLetterInput } from './dead-letters.js';
import type { InboundMessage, SinkName } from '../core/message.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'columns-test-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * The schema of format version 2 exactly as the node wrote it before its message columns were listed once
 * (columns.ts): kept here word for word, comments included, since SQLite stores the CREATE TABLE text in the file.
 */
const FORMAT_2_SQL = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id  TEXT    NOT NULL,
  topic       TEXT    NOT NULL,
  payload     BLOB    NOT NULL,
  qos         INTEGER NOT NULL,
  retain      INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  -- bit mask of the sinks that still have to deliver (or dead-letter) this message
  pending     INTEGER NOT NULL,
  -- checksum.ts: CRC-32C of the message's columns at commit; NULL: none (format 1 rows, dlq replays)
  crc         INTEGER
);
CREATE TABLE IF NOT EXISTS dead_letters (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  sink        TEXT    NOT NULL,
  reason      TEXT    NOT NULL,
  detail      TEXT    NOT NULL,
  message_id  TEXT    NOT NULL,
  topic       TEXT    NOT NULL,
  payload     BLOB    NOT NULL,
  qos         INTEGER NOT NULL,
  retain      INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  dead_at     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_sink ON dead_letters (sink, id);
-- Journal of the inbound window (inbound-window.ts): per commit and subscriber connection (epoch), the
-- packet id and digest of each QoS 1/2 message at consecutive positions from first_position, to recognise
-- a broker redelivery (DUP) of a message committed just before the connection died.
CREATE TABLE IF NOT EXISTS inbound_window_log (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  entries        BLOB    NOT NULL,
  epoch          INTEGER NOT NULL DEFAULT 0,
  first_position INTEGER NOT NULL DEFAULT 0
);
`;

const SPOOL_ID = '0123456789abcdef0123456789abcdef';

/** The commit record as the node writes it (commit-record.ts), spelled out. */
function writeCommitRecord(dir: string, seq: number): void {
  const body = `mqtt-ingest spool commit record 1\nspool ${SPOOL_ID}\nseq ${String(seq).padStart(20, '0')}\n`;
  const crc = crc32c(Buffer.from(body, 'latin1')).toString(16).padStart(8, '0');
  writeFileSync(path.join(dir, 'spool.committed'), `${body}crc ${crc}\n`, 'latin1');
}

/** What the file says about its tables, columns and indexes. */
function layout(db: Database.Database): unknown {
  const objects = db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string; type: string }[];
  const columns = objects.filter((o) => o.type === 'table').map((o) => [o.name, db.prepare(`PRAGMA table_xinfo(${o.name})`).all()]);
  const indexes = objects.filter((o) => o.type === 'index').map((o) => [o.name, db.prepare(`PRAGMA index_xinfo(${o.name})`).all()]);
  return { objects, columns, indexes };
}

/**
 * What format 3 adds to a format 2 file, spelled out as the migration must run it: the property columns at
 * the end of both message tables.
 */
const FORMAT_2_TO_3_SQL = `
ALTER TABLE messages ADD COLUMN user_properties TEXT;
ALTER TABLE messages ADD COLUMN content_type TEXT;
ALTER TABLE dead_letters ADD COLUMN user_properties TEXT;
ALTER TABLE dead_letters ADD COLUMN content_type TEXT;
`;

/** The columns and indexes alone (a new file's CREATE TABLE text differs from a migrated one's). */
function columnsOf(file: string): unknown {
  const { columns, indexes } = fileLayout(file) as { columns: unknown; indexes: unknown };
  return { columns, indexes };
}

function fileLayout(file: string): unknown {
  const db = new Database(file, { readonly: true });
  try {
    return layout(db);
  } finally {
    db.close();
  }
}

/**
 * A spool.db as the node wrote it before: two messages with the checksums it computed at commit, one message
 * of a sink no longer routed, a dead letter, a window journal row; every statement spelled out.
 */
function writeFormat2Spool(dir: string): void {
  const db = new Database(path.join(dir, 'spool.db'));
  db.pragma('auto_vacuum = INCREMENTAL');
  db.pragma('journal_mode = WAL');
  db.exec(FORMAT_2_SQL);
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('schema_version', '2');
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('spool_id', SPOOL_ID);
  const insert = db.prepare('INSERT INTO messages (message_id, topic, payload, qos, retain, received_at, pending, crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  insert.run('01JCZ8Q0K2W5V7M9N1P3R5T7X9', 'plant/a', Buffer.from('{"t":21.5}'), 1, 0, 1_700_000_000_000, 5, -1075518270);
  insert.run('01JCZ8Q0K2W5V7M9N1P3R5T7XA', 'plant/b/°C', Buffer.from([0xff, 0x00, 0xfe]), 2, 1, 1_700_000_000_001, 4, -18143559);
  insert.run('01JCZ8Q0K2W5V7M9N1P3R5T7XB', 'plant/c', Buffer.from('three'), 0, 0, 1_700_000_000_002, 2, null);
  db.prepare(
    `INSERT INTO dead_letters (sink, reason, detail, message_id, topic, payload, qos, retain, received_at, dead_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run('pubsub', 'invalid', 'bad json', '01JCZ8Q0K2W5V7M9N1P3R5T7X8', 'plant/z', Buffer.from('zz'), 0, 0, 1_699_999_999_999, 1_700_000_000_500);
  db.prepare('INSERT INTO inbound_window_log (entries, epoch, first_position) VALUES (?, ?, ?)').run(Buffer.alloc(14, 1), 1, 1);
  db.close();
  writeCommitRecord(dir, 3);
}

describe('the message columns (columns.ts): format 2 kept, format 3 adding the property columns at the end', () => {
  it("a new spool has format 2's tables, columns, types, order and indexes, then the property columns", () => {
    const dir = tempDir();
    Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] }).close();
    const reference = path.join(tempDir(), 'spool.db');
    const db = new Database(reference);
    db.exec(FORMAT_2_SQL);
    db.exec(FORMAT_2_TO_3_SQL);
    db.close();
    expect(columnsOf(path.join(dir, 'spool.db'))).toEqual(columnsOf(reference));
  });

  it('a spool.db written in format 2 is migrated at open and drains unchanged', () => {
    const dir = tempDir();
    writeFormat2Spool(dir);
    // What the file must look like after the migration: the same file, migrated by hand.
    const referenceDir = tempDir();
    writeFormat2Spool(referenceDir);
    const reference = new Database(path.join(referenceDir, 'spool.db'));
    reference.exec(FORMAT_2_TO_3_SQL);
    reference.close();
    const before = fileLayout(path.join(referenceDir, 'spool.db'));
    const corrupt: [SinkName, readonly DeadLetterInput[]][] = [];
    const spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file', 'pubsub'], onCorrupt: (sink, items) => corrupt.push([sink, items]) });
    expect(spool.openWarnings).toEqual([]);
    expect(spool.getMeta('schema_version')).toBe('3');
    expect(spool.getMeta('spool_id')).toBe(SPOOL_ID);
    // The bigquery row: no longer routed, so dead-lettered at open with the whole message.
    expect(spool.releasedAtOpen).toEqual({ bigquery: 1 });
    const a = { seq: 1, messageId: '01JCZ8Q0K2W5V7M9N1P3R5T7X9', topic: 'plant/a', payload: Buffer.from('{"t":21.5}'), qos: 1, retain: false, receivedAt: 1_700_000_000_000 };
    const b = { seq: 2, messageId: '01JCZ8Q0K2W5V7M9N1P3R5T7XA', topic: 'plant/b/°C', payload: Buffer.from([0xff, 0x00, 0xfe]), qos: 2, retain: true, receivedAt: 1_700_000_000_001 };
    const letters = spool.deadLetters.list();
    expect(letters[0]!.deadAt).toBe(1_700_000_000_500);
    expect(letters.map(({ deadAt: _, ...d }) => d)).toEqual([
      { id: 1, sink: 'pubsub', reason: 'invalid', detail: 'bad json', messageId: '01JCZ8Q0K2W5V7M9N1P3R5T7X8', topic: 'plant/z', payload: Buffer.from('zz'), qos: 0, retain: false, receivedAt: 1_699_999_999_999 },
      {
        id: 2,
        sink: 'bigquery',
        reason: 'sink_disabled',
        detail: 'sink bigquery is no longer configured',
        messageId: '01JCZ8Q0K2W5V7M9N1P3R5T7XB',
        topic: 'plant/c',
        payload: Buffer.from('three'),
        qos: 0,
        retain: false,
        receivedAt: 1_700_000_000_002,
      },
    ]);
    const deadBytes = messageBytes('plant/z', Buffer.from('zz')) + messageBytes('plant/c', Buffer.from('three'));
    expect(spool.stats()).toMatchObject({
      messages: 2,
      bytes: messageBytes(a.topic, a.payload) + messageBytes(b.topic, b.payload) + deadBytes,
      pending: { file: 2, pubsub: 1 },
      deadLetters: 2,
      oldestReceivedAt: a.receivedAt,
    });

    // The checksums written before still match: nothing is taken for damage.
    const forFile = spool.lease('file', 10);
    const forPubsub = spool.lease('pubsub', 10);
    expect(forFile).toEqual([a, b]);
    expect(forPubsub).toEqual([a]);
    expect(corrupt).toEqual([]);
    spool.ack('file', forFile);
    spool.ack('pubsub', forPubsub);
    expect(spool.stats()).toMatchObject({ messages: 0, bytes: deadBytes, pending: { file: 0, pubsub: 0 }, deadLetters: 2 });

    // A dead letter written before goes back as a row like the ones written before, with its checksum.
    expect(spool.replayDeadLetters({ ids: [1] })).toBe(1);
    expect(spool.db.prepare('SELECT seq, message_id, topic, payload, qos, retain, received_at, pending, crc FROM messages').all()).toEqual([
      {
        seq: 4,
        message_id: '01JCZ8Q0K2W5V7M9N1P3R5T7X8',
        topic: 'plant/z',
        payload: Buffer.from('zz'),
        qos: 0,
        retain: 0,
        received_at: 1_699_999_999_999,
        pending: 1,
        crc: rowChecksum('plant/z', Buffer.from('zz'), '01JCZ8Q0K2W5V7M9N1P3R5T7X8', 0, false, 1_699_999_999_999),
      },
    ]);
    const replayed = spool.lease('pubsub', 10);
    expect(replayed.map((m) => [m.messageId, m.topic, m.qos, m.retain])).toEqual([['01JCZ8Q0K2W5V7M9N1P3R5T7X8', 'plant/z', 0, false]]);
    spool.ack('pubsub', replayed);
    expect(spool.stats()).toMatchObject({ messages: 0, deadLetters: 1 });
    spool.close();
    expect(fileLayout(path.join(dir, 'spool.db'))).toEqual(before);
  });

  it('writes each value into the column the format gives it, through both insert paths and the dead letters', () => {
    const dir = tempDir();
    const spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file', 'bigquery'] });
    // 123 rows: two multi-row INSERTs of 50 and 23 single ones.
    const messages: InboundMessage[] = Array.from({ length: 123 }, (_, i) => ({
      topic: `plant/${i}`,
      payload: Buffer.from(`p${i}`),
      qos: (i % 3) as 0 | 1 | 2,
      retain: i % 2 === 1,
      receivedAt: 1_700_000_000_000 + i * 7,
    }));
    const results = spool.append(messages);
    const rows = spool.db.prepare('SELECT seq, message_id, topic, payload, qos, retain, received_at, pending, crc FROM messages ORDER BY seq').all();
    expect(rows).toEqual(
      messages.map((m, i) => {
        const r = results[i]!;
        if (!r.stored) throw new Error('stored');
        return {
          seq: r.seq,
          message_id: r.messageId,
          topic: `plant/${i}`,
          payload: Buffer.from(`p${i}`),
          qos: i % 3,
          retain: i % 2,
          received_at: 1_700_000_000_000 + i * 7,
          pending: 2 | 4,
          crc: rowChecksum(`plant/${i}`, Buffer.from(`p${i}`), r.messageId, i % 3, i % 2 === 1, 1_700_000_000_000 + i * 7),
        };
      }),
    );
    const [first] = spool.lease('file', 1);
    spool.deadLetter('file', [{ message: first!, reason: 'too_large', detail: 'over 10 MB' }]);
    expect(spool.db.prepare('SELECT id, sink, reason, detail, message_id, topic, payload, qos, retain, received_at FROM dead_letters').all()).toEqual([
      { id: 1, sink: 'file', reason: 'too_large', detail: 'over 10 MB', message_id: first!.messageId, topic: 'plant/0', payload: Buffer.from('p0'), qos: 0, retain: 0, received_at: 1_700_000_000_000 },
    ]);
    spool.close();
  });
});
