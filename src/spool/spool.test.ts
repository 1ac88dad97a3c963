import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool, messageBytes, type SourcedMessage } from './spool.js';
import { SpoolWriter } from './group-commit.js';
import { SpoolFullError } from '../core/errors.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'spool-test-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function msg(i: number, extra: Partial<SourcedMessage> = {}): SourcedMessage {
  return { topic: `plant/sensor/${i}`, payload: Buffer.from(`{"p":${i}}`), qos: 1, retain: false, receivedAt: 1_700_000_000_000 + i, ...extra };
}

describe('spool', () => {
  it('keeps meta settings across reopening, lists them by prefix (% and _ taken literally) and deletes them', () => {
    const dir = tempDir();
    let spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    spool.setMeta('subscriptions a_b%', '1');
    spool.setMeta('subscriptions axbz', '2');
    spool.setMeta('other', '3');
    spool.close();
    spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    expect(spool.metaKeys('subscriptions ').sort()).toEqual(['subscriptions a_b%', 'subscriptions axbz']);
    expect(spool.metaKeys('subscriptions a_b%')).toEqual(['subscriptions a_b%']);
    spool.deleteMeta('subscriptions axbz');
    expect(spool.getMeta('subscriptions axbz')).toBeUndefined();
    expect(spool.getMeta('other')).toBe('3');
    spool.close();
  });

  it('assigns a unique, time-sortable message_id at commit and keeps the bytes', () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1e9, sinks: ['file'] });
    const binary = Buffer.from([0xff, 0x00, 0xfe, 0x80]);
    const results = spool.append([msg(1), msg(2, { payload: binary })]);
    expect(results.every((r) => r.stored)).toBe(true);
    const leased = spool.lease('file', 10);
    expect(leased.map((m) => m.topic)).toEqual(['plant/sensor/1', 'plant/sensor/2']);
    expect(leased[1].payload.equals(binary)).toBe(true);
    expect(leased[0].messageId < leased[1].messageId).toBe(true);
    expect(new Set(leased.map((m) => m.messageId)).size).toBe(2);
    spool.close();
  });

  it('invariant 2: a row leaves only when every routed sink has delivered or dead-lettered it', () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1e9, sinks: ['pubsub', 'file'] });
    spool.append([msg(1), msg(2)]);
    const forPubsub = spool.lease('pubsub', 10);
    spool.ack('pubsub', forPubsub);
    expect(spool.stats().messages).toBe(2);
    expect(spool.stats().pending).toEqual({ pubsub: 0, file: 2 });
    const forFile = spool.lease('file', 10);
    spool.ack('file', [forFile[0]]);
    spool.deadLetter('file', [{ message: forFile[1], reason: 'invalid', detail: 'bad row' }]);
    expect(spool.stats().messages).toBe(0);
    expect(spool.stats().deadLetters).toBe(1);
    spool.close();
  });

  it('keeps messages, bytes and pending exact when an acknowledgement names rows already gone', () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1e9, sinks: ['pubsub'] });
    spool.append([msg(1), msg(2, { topic: 'plänt/°C' }), msg(3, { payload: Buffer.alloc(1000) })]);
    const recount = () => {
      const fresh = Spool.open({ dir: path.dirname(spool.path), maxBytes: 1e9, sinks: ['pubsub'] });
      const stats = fresh.stats();
      fresh.close();
      return stats;
    };
    const [a, b, c] = spool.lease('pubsub', 10);
    spool.ack('pubsub', [a!]);
    spool.ack('pubsub', [a!, b!]); // a twice: only b leaves now, and only b's bytes are taken off
    const { bytes, messages, pending } = spool.stats();
    expect({ bytes, messages, pending }).toMatchObject({ messages: 1, pending: { pubsub: 1 } });
    expect(bytes).toBe(recount().bytes);
    expect(bytes).toBe(messageBytes(c!.topic, c!.payload));
    spool.ack('pubsub', [c!]);
    expect(spool.stats()).toMatchObject({ messages: 0, bytes: 0, pending: { pubsub: 0 } });
    spool.close();
  });

  it('an acknowledgement of a run of consecutive seqs and of a broken run remove exactly those rows', () => {
    // message-store.ts acknowledges a run lo..hi with a range statement and any other set with a list.
    for (const sinks of [['pubsub'], ['pubsub', 'file']] as const) {
      const spool = Spool.open({ dir: tempDir(), maxBytes: 1e9, sinks: [...sinks] });
      spool.append(Array.from({ length: 10 }, (_, i) => msg(i)));
      const all = spool.lease('pubsub', 10);
      spool.ack('pubsub', all.slice(2, 6)); // a run: seqs 3..6
      spool.ack('pubsub', [all[0]!, all[7]!, all[9]!]); // not a run
      spool.ack('pubsub', [all[1]!, all[2]!]); // a run holding a seq acknowledged before
      const stats = spool.stats();
      expect(stats.pending.pubsub).toBe(2);
      if (sinks.length === 2) {
        // The other sink still needs every row: none left the table, and only pubsub's bits were cleared.
        expect(stats.messages).toBe(10);
        expect(stats.pending.file).toBe(10);
        spool.ack('file', spool.lease('file', 10).slice(0, 5)); // seqs 1..5, every one done for pubsub too
        expect(spool.stats().messages).toBe(5);
      } else expect(stats.messages).toBe(2);
      const bytes = spool.stats().bytes;
      const dir = path.dirname(spool.path);
      spool.close();
      // Reopened (the leases start again from the oldest row), counted afresh from the file.
      const fresh = Spool.open({ dir, maxBytes: 1e9, sinks: [...sinks] });
      expect(fresh.stats().bytes).toBe(bytes);
      expect(fresh.lease('pubsub', 10).map((m) => m.seq)).toEqual([all[6]!.seq, all[8]!.seq]);
      if (sinks.length === 2) expect(fresh.lease('file', 10).map((m) => m.seq)).toEqual(all.slice(5).map((m) => m.seq));
      fresh.close();
    }
  });

  it('gives each message of a large group its own seq (multi-row inserts), duplicates interleaved', () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1e9, sinks: ['file'] });
    const first = spool.beginInboundConnection();
    spool.append([msg(7, { packetId: 7, epoch: first, position: 1 })]);
    const second = spool.beginInboundConnection();
    const group = Array.from({ length: 123 }, (_, i) =>
      i === 60 ? msg(7, { packetId: 7, dup: true, epoch: second, position: i + 1 }) : msg(1000 + i, { packetId: 1000 + i, epoch: second, position: i + 1 }),
    );
    const results = spool.append(group);
    expect(results[60].stored).toBe(false);
    const bySeq = new Map(spool.lease('file', 1000).map((m) => [m.seq, m]));
    results.forEach((r, i) => {
      if (!r.stored) return;
      const row = bySeq.get(r.seq);
      expect(row?.messageId).toBe(r.messageId);
      expect(row?.topic).toBe(group[i].topic);
    });
    spool.close();
  });

  it('a lease does not hand out the same rows twice; a reopened spool hands out everything pending again', () => {
    const dir = tempDir();
    let spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    spool.append([msg(1), msg(2), msg(3)]);
    expect(spool.lease('file', 2).length).toBe(2);
    expect(spool.lease('file', 2).length).toBe(1);
    expect(spool.lease('file', 2).length).toBe(0);
    spool.close();
    spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    expect(spool.lease('file', 10).length).toBe(3);
    spool.close();
  });

  it('never reuses a seq after the newest row is deleted (a cursor would skip it)', () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1e9, sinks: ['file'] });
    spool.append([msg(1)]);
    const [m1] = spool.lease('file', 10);
    spool.ack('file', [m1]);
    spool.append([msg(2)]);
    const next = spool.lease('file', 10);
    expect(next.length).toBe(1);
    expect(next[0].seq).toBeGreaterThan(m1.seq);
    spool.close();
  });

  it('invariant 3: a DUP redelivery of a message the previous connection committed is not stored twice; anything else is', () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1e9, sinks: ['file'] });
    const c1 = spool.beginInboundConnection();
    const [first] = spool.append([msg(1, { packetId: 7, epoch: c1, position: 1 })]);
    expect(first.stored).toBe(true);
    const c2 = spool.beginInboundConnection();
    expect(spool.append([msg(1, { packetId: 7, dup: true, epoch: c2, position: 1 })])).toEqual([{ stored: false, duplicateOf: '' }]);
    // The same again on the same connection: its one redelivery was already matched.
    expect(spool.append([msg(1, { packetId: 7, dup: true, epoch: c2, position: 2 })])[0].stored).toBe(true);
    // Same packet id, DUP, other payload on the next connection: a different message, stored.
    const c3 = spool.beginInboundConnection();
    expect(spool.append([msg(2, { packetId: 7, dup: true, epoch: c3, position: 1 })])[0].stored).toBe(true);
    // Same payload, no DUP flag: a new publish that happens to repeat, stored.
    expect(spool.append([msg(2, { packetId: 7, epoch: c3, position: 2 })])[0].stored).toBe(true);
    // Packet id and DUP flag without a connection (not from the subscriber): never matched.
    expect(spool.append([msg(2, { packetId: 7, dup: true })])[0].stored).toBe(true);
    expect(spool.stats().messages).toBe(5);
    spool.close();
  });

  it('invariant 3 across a restart, and within one group (a message and its redelivery committed together)', () => {
    const dir = tempDir();
    let spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    const c1 = spool.beginInboundConnection();
    spool.append([msg(1, { packetId: 9, epoch: c1, position: 1 })]);
    spool.close();
    spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    const c2 = spool.beginInboundConnection();
    expect(c2).toBeGreaterThan(c1);
    expect(spool.append([msg(1, { packetId: 9, dup: true, epoch: c2, position: 1 })])).toEqual([{ stored: false, duplicateOf: '' }]);
    // Connection c2 closes before its message at position 2 is committed; the redelivery on c3 joins it in one group.
    spool.endInboundConnection(c2, 1);
    const c3 = spool.beginInboundConnection();
    const both = spool.append([msg(5, { packetId: 11, epoch: c2, position: 2 }), msg(5, { packetId: 11, dup: true, epoch: c3, position: 1 })]);
    expect(both.map((r) => r.stored)).toEqual([true, false]);
    expect(spool.stats().messages).toBe(2);
    spool.close();
  });

  it('the window journal keeps the last 65,535 positions of the two newest connections and prunes the rest', () => {
    const dir = tempDir();
    let spool = Spool.open({ dir, maxBytes: 1e12, sinks: ['file'] });
    const rows = () => spool.db.prepare('SELECT COUNT(*) FROM inbound_window_log').pluck().get() as number;
    const c1 = spool.beginInboundConnection();
    for (let g = 0; g < 80; g++) {
      spool.append(Array.from({ length: 1000 }, (_, i) => msg(g * 1000 + i, { packetId: ((g * 1000 + i) % 65535) + 1, epoch: c1, position: g * 1000 + i + 1 })));
    }
    // 65 rows hold the last 65,535 positions; up to 4,096 entries wait for the next pass.
    expect(rows()).toBeGreaterThanOrEqual(66);
    expect(rows()).toBeLessThanOrEqual(70);
    spool.close();
    spool = Spool.open({ dir, maxBytes: 1e12, sinks: ['file'] });
    // The last message of c1 (position 80,000) is still recognised after the restart.
    const c2 = spool.beginInboundConnection();
    const last = 79_999;
    expect(spool.append([msg(last, { packetId: (last % 65535) + 1, dup: true, epoch: c2, position: 1 })])[0].stored).toBe(false);
    const c3 = spool.beginInboundConnection();
    spool.append([msg(1, { packetId: 1, epoch: c3, position: 1 })]);
    // c3 and c2 are the two newest connections with entries: every row of c1 is gone.
    expect(spool.db.prepare('SELECT COUNT(*) FROM inbound_window_log WHERE epoch = ?').pluck().get(c1)).toBe(0);
    expect(rows()).toBe(2);
    spool.close();
  });

  it('invariant 4: a full spool refuses the append (nothing stored) instead of dropping', () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1024, sinks: ['file'] });
    const big = { ...msg(1), payload: Buffer.alloc(2000) };
    spool.append([big]);
    expect(spool.isFull()).toBe(true);
    expect(() => spool.append([msg(2)])).toThrow(SpoolFullError);
    expect(spool.stats().messages).toBe(1);
    const [m] = spool.lease('file', 1);
    spool.ack('file', [m]);
    expect(spool.isFull()).toBe(false);
    expect(spool.append([msg(2)])[0].stored).toBe(true);
    spool.close();
  });

  it('the group-commit writer holds messages unacknowledged while the spool is full and commits them once there is room', async () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1024, sinks: ['file'] });
    const writer = new SpoolWriter(spool, { fullRetryMs: 20 });
    await writer.submit({ ...msg(1), payload: Buffer.alloc(2000) });
    let committed = false;
    const pending = writer.submit(msg(2)).then(() => (committed = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(committed).toBe(false);
    expect(writer.isBlocked).toBe(true);
    const [m] = spool.lease('file', 1);
    spool.ack('file', [m]);
    await pending;
    expect(committed).toBe(true);
    writer.close();
    spool.close();
  });

  it('group commit: messages submitted together share one transaction and resolve in order', async () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1e9, sinks: ['file'] });
    const writer = new SpoolWriter(spool, { maxBatch: 500 });
    const results = await Promise.all(Array.from({ length: 1200 }, (_, i) => writer.submit(msg(i))));
    const seqs = results.map((r) => (r.stored ? r.seq : -1));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(spool.stats().messages).toBe(1200);
    writer.close();
    spool.close();
  });

  it('with no sink routed, committed rows are swept instead of filling the spool', () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1e9, sinks: [] });
    spool.append([msg(1), msg(2)]);
    spool.refreshCounters();
    expect(spool.stats().messages).toBe(0);
    spool.close();
  });

  it('dead letters can be listed, replayed with their message_id, and purged', () => {
    const spool = Spool.open({ dir: tempDir(), maxBytes: 1e9, sinks: ['pubsub', 'file'] });
    spool.append([msg(1), msg(2)]);
    const leased = spool.lease('pubsub', 10);
    spool.deadLetter('pubsub', leased.map((m) => ({ message: m, reason: 'too_large', detail: 'over 10 MB' })));
    const dead = spool.deadLetters.list({ sink: 'pubsub' });
    expect(dead.map((d) => d.reason)).toEqual(['too_large', 'too_large']);
    expect(spool.replayDeadLetters({ ids: [dead[0].id] })).toBe(1);
    const again = spool.lease('pubsub', 10);
    expect(again.map((m) => m.messageId)).toEqual([leased[0].messageId]);
    expect(spool.deadLetters.purgeOlderThan(Date.now() + 1000)).toBe(1);
    expect(spool.deadLetters.count()).toBe(0);
    spool.close();
  });

  it('rows pending for a sink that is no longer configured become dead letters (sink_disabled), not lost', () => {
    const dir = tempDir();
    let spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['pubsub', 'file'] });
    spool.append([msg(1)]);
    spool.close();
    spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    expect(spool.deadLetters.list().map((d) => [d.sink, d.reason])).toEqual([['pubsub', 'sink_disabled']]);
    expect(spool.releasedAtOpen).toEqual({ pubsub: 1 });
    expect(spool.stats().pending).toEqual({ file: 1 });
    spool.close();
  });

  it('refuses to open a spool written in another format version, naming both versions', () => {
    const dir = tempDir();
    const spool = Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] });
    spool.setMeta('schema_version', '99');
    spool.close();
    expect(() => Spool.open({ dir, maxBytes: 1e9, sinks: ['file'] })).toThrow(/version 99.*version 3/);
  });
});
