import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool } from './spool.js';
import { RecentRows } from './recent-rows.js';
import type { InboundMessage, SpooledMessage } from '../core/message.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'recent-rows-test-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Messages of every shape a row can hold: properties or none, QoS 0/1, retained or not. */
function msgs(from: number, n: number): InboundMessage[] {
  return Array.from({ length: n }, (_, i) => {
    const k = from + i;
    const m: InboundMessage = { topic: `plant/${k % 7}/p`, payload: Buffer.from(`{"seq":${k}}`), qos: (k % 2) as 0 | 1, retain: k % 5 === 0, receivedAt: 1_700_000_000_000 + k };
    if (k % 3 === 0) m.properties = { userProperties: { site: 'Zürich', tag: ['a', String(k)] } };
    if (k % 4 === 0) m.properties = { ...m.properties, contentType: 'application/json' };
    return m;
  });
}

/** Everything pending for the sink, leased `batch` at a time. */
function leaseAll(spool: Spool, sink: 'pubsub' | 'file', batch: number): SpooledMessage[] {
  const out: SpooledMessage[] = [];
  for (;;) {
    const b = spool.lease(sink, batch);
    if (b.length === 0) return out;
    out.push(...b);
  }
}

/** A row written by another connection, as `mqtt-ingest dlq replay` writes into a running node's spool. */
function insertFromOutside(dir: string, messageId: string): void {
  const db = new Database(path.join(dir, 'spool.db'));
  db.pragma('busy_timeout = 5000');
  db.prepare(
    "INSERT INTO messages (message_id, topic, payload, qos, retain, received_at, pending, crc, user_properties, content_type) SELECT ?, 'outside/row', payload, qos, retain, received_at, pending | 3, NULL, NULL, NULL FROM messages ORDER BY seq DESC LIMIT 1",
  ).run(messageId);
  db.close();
}

describe('the rows committed last, leased from memory (recent-rows.ts)', () => {
  it('hands out the same messages, field for field, as reading the rows back from SQLite after a restart', () => {
    const dir = tempDir();
    let spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['pubsub', 'file'] });
    spool.append(msgs(0, 73));
    spool.append(msgs(73, 40));
    const fromMemory = leaseAll(spool, 'pubsub', 30);
    spool.close();
    spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['pubsub', 'file'] });
    const fromDisk = leaseAll(spool, 'pubsub', 30);
    expect(fromMemory).toHaveLength(113);
    expect(fromMemory).toEqual(fromDisk);
    // Both shapes agree on what is absent too: no `properties` key on a message without any.
    expect(fromMemory.filter((m) => !('properties' in m)).length).toBe(fromDisk.filter((m) => !('properties' in m)).length);
    spool.close();
  });

  it('a row another process wrote between two commits is leased in its place, none missing, none twice', () => {
    const dir = tempDir();
    const spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['pubsub', 'file'] });
    spool.append(msgs(0, 10));
    expect(spool.lease('pubsub', 4)).toHaveLength(4);
    insertFromOutside(dir, '01OUTSIDE000000000000000001');
    spool.append(msgs(10, 10));
    const rest = leaseAll(spool, 'pubsub', 4);
    expect(rest.map((m) => m.seq)).toEqual(Array.from({ length: 17 }, (_, i) => 5 + i));
    expect(rest.filter((m) => m.topic === 'outside/row').map((m) => m.seq)).toEqual([11]);
    // The other sink, which leased nothing yet, reads the same from the start.
    expect(leaseAll(spool, 'file', 7).map((m) => m.seq)).toEqual(Array.from({ length: 21 }, (_, i) => 1 + i));
    spool.close();
  });

  it('a row another process wrote after the last commit is leased although nothing is committed after it', () => {
    const dir = tempDir();
    const spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['pubsub'] });
    spool.append(msgs(0, 5));
    expect(leaseAll(spool, 'pubsub', 10)).toHaveLength(5);
    insertFromOutside(dir, '01OUTSIDE000000000000000002');
    expect(spool.lease('pubsub', 10).map((m) => [m.seq, m.topic])).toEqual([[6, 'outside/row']]);
    spool.close();
  });

  it('holds at most its bytes, the oldest leaving first; a sink behind them reads SQLite until it reaches them', () => {
    const recent = new RecentRows(3 * 215);
    const m = (seq: number): SpooledMessage => ({ seq, messageId: `id${seq}`, topic: 't', payload: Buffer.alloc(13), qos: 1, retain: false, receivedAt: seq });
    recent.add([1, 2, 3, 4, 5].map(m));
    expect(recent.size).toBe(3);
    const out: SpooledMessage[] = [];
    expect(recent.take(0, 10, 1e9, out)).toBeUndefined(); // 1 and 2 are gone: read from SQLite
    expect(recent.take(2, 10, 1e9, out)).toBe(5);
    expect(out.map((x) => x.seq)).toEqual([3, 4, 5]);
    expect(recent.take(5, 10, 1e9, [])).toBeUndefined(); // nothing after 5 here: SQLite may hold rows of others
    // A payload budget: at least one message, then only what fits.
    const some: SpooledMessage[] = [];
    expect(recent.take(2, 10, 20, some)).toBe(3);
    expect(some).toHaveLength(1);
    // A seq that does not follow starts a new run.
    recent.add([m(9)]);
    expect(recent.size).toBe(1);
    expect(recent.take(5, 10, 1e9, [])).toBeUndefined();
    expect(recent.take(8, 10, 1e9, [])).toBe(9);
  });

  it('keeps a row until every routed sink has leased it', () => {
    const dir = tempDir();
    const spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['pubsub', 'file'] });
    spool.append(msgs(0, 20));
    const first = leaseAll(spool, 'pubsub', 8);
    expect(first).toHaveLength(20);
    // Each lease its own objects: what one sink's route stage sets on a message is not seen by the other's.
    (first[0] as SpooledMessage & { routed?: unknown }).routed = { pubsub: {} };
    // The file sink has leased nothing: every row is still held for it, from memory.
    const recent = (spool as unknown as { recent: RecentRows }).recent;
    expect(recent.size).toBe(20);
    const second = spool.lease('file', 15);
    expect(second).toHaveLength(15);
    expect(second[0]!.seq).toBe(first[0]!.seq);
    expect('routed' in second[0]!).toBe(false);
    expect(recent.size).toBe(5);
    expect(spool.lease('file', 15)).toHaveLength(5);
    expect(recent.size).toBe(0);
    spool.close();
  });
});
