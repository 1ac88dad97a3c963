import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool, messageBytes } from './spool.js';
import { rowChecksum } from './checksum.js';
import type { DeadLetterInput } from './dead-letters.js';
import type { InboundMessage, SinkName } from '../core/message.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'props-test-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const withProps: InboundMessage = {
  topic: 'plant/a',
  payload: Buffer.from('{"t":21.5}'),
  qos: 1,
  retain: false,
  receivedAt: 1_700_000_000_000,
  properties: { userProperties: { site: 'Zürich', tag: ['a', 'b'] }, contentType: 'application/json' },
};
const typeOnly: InboundMessage = { topic: 'plant/b', payload: Buffer.from('x'), qos: 0, retain: true, receivedAt: 1_700_000_000_001, properties: { contentType: 'text/plain' } };
const plain: InboundMessage = { topic: 'plant/c', payload: Buffer.from('y'), qos: 1, retain: false, receivedAt: 1_700_000_000_002 };

function cells(spool: Spool, table = 'messages'): unknown[] {
  return spool.db.prepare(`SELECT user_properties, content_type FROM ${table} ORDER BY 1`).raw(true).all();
}

describe('spool format 3: MQTT 5 properties', () => {
  it('keeps user properties and content type with each message, in both insert paths; none for a message without', () => {
    const dir = tempDir();
    const spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    // 53 messages: one multi-row INSERT of 50, then single ones.
    const batch = Array.from({ length: 53 }, (_, i) => [withProps, typeOnly, plain][i % 3]!);
    spool.append(batch);
    const leased = spool.lease('file', 100);
    expect(leased.map((m) => m.properties)).toEqual(batch.map((m) => m.properties));
    expect(leased.filter((m) => !('properties' in m))).toHaveLength(17);
    const stored = spool.db.prepare('SELECT user_properties, content_type FROM messages WHERE seq IN (1, 2, 3) ORDER BY seq').raw(true).all();
    expect(stored).toEqual([
      ['{"site":"Zürich","tag":["a","b"]}', 'application/json'],
      [null, 'text/plain'],
      [null, null],
    ]);
    spool.close();
  });

  it('the checksum covers the properties; a row without them has the checksum of format 2', () => {
    const dir = tempDir();
    const corrupt: [SinkName, readonly DeadLetterInput[]][] = [];
    const options = { dir, maxBytes: 1e9, sinks: ['file' as const], onCorrupt: (sink: SinkName, items: readonly DeadLetterInput[]) => corrupt.push([sink, items]) };
    let spool = Spool.open(options);
    const results = spool.append([withProps, typeOnly, plain]);
    const ids = results.map((r) => (r.stored ? r.messageId : ''));
    const crcs = spool.db.prepare('SELECT crc FROM messages ORDER BY seq').pluck().all();
    expect(crcs[2]).toBe(rowChecksum(plain.topic, plain.payload, ids[2]!, plain.qos, plain.retain, plain.receivedAt));
    expect(crcs[0]).not.toBe(rowChecksum(withProps.topic, withProps.payload, ids[0]!, withProps.qos, withProps.retain, withProps.receivedAt));
    // Changed behind the spool's back, as damage on disk would: both rows are refused, the third delivered.
    spool.db.prepare(`UPDATE messages SET user_properties = '{"site":"Zurich","tag":["a","b"]}' WHERE seq = 1`).run();
    spool.db.prepare(`UPDATE messages SET content_type = 'text/plaim' WHERE seq = 2`).run();
    // Read back at the next start: a lease that keeps up is given the rows just committed from memory (recent-rows.ts).
    spool.close();
    spool = Spool.open(options);
    expect(spool.lease('file', 10).map((m) => m.topic)).toEqual(['plant/c']);
    expect(corrupt.flatMap(([, items]) => items.map((d) => [d.message.topic, d.reason]))).toEqual([
      ['plant/a', 'corrupt'],
      ['plant/b', 'corrupt'],
    ]);
    spool.close();
  });

  it('text that no longer parses is dead-lettered as corrupt, not a failed lease', () => {
    const dir = tempDir();
    let spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    spool.append([withProps, plain]);
    spool.db.prepare(`UPDATE messages SET user_properties = '{"site":"Zür' WHERE seq = 1`).run();
    spool.close();
    spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    expect(spool.lease('file', 10).map((m) => m.topic)).toEqual(['plant/c']);
    expect(spool.deadLetters.list().map((d) => [d.topic, d.reason])).toEqual([['plant/a', 'corrupt']]);
    spool.close();
  });

  it('dead letters keep the properties, and a replay delivers them again with a checksum over them', () => {
    const dir = tempDir();
    let spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file', 'pubsub'] });
    spool.append([withProps, typeOnly, plain]);
    const leased = spool.lease('pubsub', 10);
    spool.deadLetter('pubsub', leased.map((message) => ({ message, reason: 'invalid', detail: 'test' })));
    expect(cells(spool, 'dead_letters')).toEqual(cells(spool, 'messages'));
    expect(spool.deadLetters.list().map((d) => d.properties)).toEqual([withProps.properties, typeOnly.properties, undefined]);
    spool.close();

    spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file', 'pubsub'] });
    expect(spool.replayDeadLetters({ sink: 'pubsub' })).toBe(3);
    const again = spool.lease('pubsub', 10);
    expect(again.map((m) => [m.messageId, m.properties])).toEqual(leased.map((m) => [m.messageId, m.properties]));
    const replayedCrcs = spool.db.prepare('SELECT crc FROM messages WHERE seq > 3 ORDER BY seq').pluck().all();
    const originalCrcs = spool.db.prepare('SELECT crc FROM messages WHERE seq <= 3 ORDER BY seq').pluck().all();
    expect(replayedCrcs).toEqual(originalCrcs);
    spool.close();
  });

  it('charges the stored property bytes against SPOOL_MAX_BYTES, the same in memory as counted in the file', () => {
    const dir = tempDir();
    const spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file', 'pubsub'] });
    spool.append([withProps, typeOnly, plain]);
    const expected =
      messageBytes(plain.topic, plain.payload) +
      messageBytes(typeOnly.topic, typeOnly.payload) + Buffer.byteLength('text/plain') +
      messageBytes(withProps.topic, withProps.payload) + Buffer.byteLength('{"site":"Zürich","tag":["a","b"]}') + Buffer.byteLength('application/json');
    expect(spool.stats().bytes).toBe(expected);
    const leased = spool.lease('pubsub', 10);
    spool.deadLetter('pubsub', [{ message: leased[0]!, reason: 'invalid', detail: 'test' }]);
    spool.ack('pubsub', leased.slice(1));
    const inMemory = spool.stats().bytes;
    spool.refreshCounters(true);
    expect(spool.stats().bytes).toBe(inMemory);
    spool.ack('file', spool.lease('file', 10));
    spool.refreshCounters(true);
    expect(spool.stats()).toMatchObject({ messages: 0, bytes: messageBytes(withProps.topic, withProps.payload, withProps.properties) });
    spool.close();
  });

  it('migrates a format 2 spool: property columns added at the end, its rows kept and still verified', () => {
    const dir = tempDir();
    const file = path.join(dir, 'spool.db');
    const old = new Database(file);
    old.pragma('journal_mode = WAL');
    old.exec(FORMAT_2_SQL);
    old.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', '2')").run();
    const id = '01JCZ8Q0K2W5V7M9N1P3R5T7X9';
    old
      .prepare('INSERT INTO messages (message_id, topic, payload, qos, retain, received_at, pending, crc) VALUES (?, ?, ?, 1, 0, ?, 4, ?)')
      .run(id, 'plant/a', Buffer.from('one'), 1_700_000_000_000, rowChecksum('plant/a', Buffer.from('one'), id, 1, false, 1_700_000_000_000));
    // A damaged format 2 row is still found after the migration.
    old.prepare('INSERT INTO messages (message_id, topic, payload, qos, retain, received_at, pending, crc) VALUES (?, ?, ?, 1, 0, ?, 4, ?)').run(id, 'plant/b', Buffer.from('two'), 1_700_000_000_001, 12345);
    old
      .prepare('INSERT INTO dead_letters (sink, reason, detail, message_id, topic, payload, qos, retain, received_at, dead_at) VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?)')
      .run('file', 'invalid', 'bad', id, 'plant/z', Buffer.from('zz'), 1_699_999_999_999, 1_700_000_000_500);
    old.close();

    let spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    expect(spool.getMeta('schema_version')).toBe('3');
    const columns = (t: string) => (spool.db.prepare(`PRAGMA table_info(${t})`).all() as { name: string }[]).map((c) => c.name).slice(-3);
    expect(columns('messages')).toEqual(['crc', 'user_properties', 'content_type']);
    expect(columns('dead_letters')).toEqual(['dead_at', 'user_properties', 'content_type']);
    const leased = spool.lease('file', 10);
    expect(leased.map((m) => [m.topic, m.payload.toString(), m.properties])).toEqual([['plant/a', 'one', undefined]]);
    expect(spool.deadLetters.list().map((d) => [d.topic, d.reason])).toEqual([
      ['plant/z', 'invalid'],
      ['plant/b', 'corrupt'],
    ]);
    spool.ack('file', leased);
    spool.append([withProps]);
    spool.close();

    spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    expect(spool.lease('file', 10).map((m) => m.properties)).toEqual([withProps.properties]);
    spool.close();
  });
});

/** Format 2's tables as a node of that version created them (the window journal left out: not touched here). */
const FORMAT_2_SQL = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
  qos INTEGER NOT NULL, retain INTEGER NOT NULL, received_at INTEGER NOT NULL, pending INTEGER NOT NULL, crc INTEGER
);
CREATE TABLE dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
  message_id TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
  received_at INTEGER NOT NULL, dead_at INTEGER NOT NULL
);
CREATE INDEX dead_letters_sink ON dead_letters (sink, id);
`;
