import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool, type SourcedMessage } from './spool.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'window-test-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Publish {
  id: number;
  body: string;
  dup?: boolean;
  topic?: string;
  /** Position on the connection; by default the next one. */
  position?: number;
}

/** One subscriber connection: what the broker sends on it, each message committed on its own as it arrives. */
function connection(spool: Spool, window?: number) {
  const epoch = spool.beginInboundConnection(window);
  let position = 0;
  const toMessage = (p: Publish): SourcedMessage => {
    position = p.position ?? position + 1;
    return {
      topic: p.topic ?? 'plant/relay-7/state',
      payload: Buffer.from(p.body),
      qos: 1,
      retain: false,
      receivedAt: 1_764_000_000_000 + position,
      packetId: p.id,
      dup: p.dup,
      epoch,
      position,
    };
  };
  return {
    epoch,
    /** Stored (true) or skipped as a redelivery (false), per message. */
    send: (...ps: Publish[]): boolean[] => ps.map((p) => spool.append([toMessage(p)])[0]!.stored),
    /** All in one group commit. */
    sendTogether: (...ps: Publish[]): boolean[] => spool.append(ps.map(toMessage)).map((r) => r.stored),
    message: toMessage,
    /** The connection closed having written PUBACKs up to `position`. */
    close: (acksWrittenUpTo: number) => spool.endInboundConnection(epoch, acksWrittenUpTo),
  };
}

const open = (dir = tempDir()) => Spool.open({ dir, maxBytes: 1e12, sinks: ['file'] });
const distinct = (ids: number[]) => ids.map((id) => ({ id, body: `reading-${id}` }));

describe('inbound window: a redelivery is skipped only when certain', () => {
  it("skips the redeliveries of the previous connection's last messages, in order, and stores what follows", () => {
    const spool = open();
    connection(spool).send(...distinct([1, 2, 3, 4, 5]));
    const c2 = connection(spool);
    expect(c2.send({ id: 3, body: 'reading-3', dup: true }, { id: 4, body: 'reading-4', dup: true }, { id: 5, body: 'reading-5', dup: true })).toEqual([false, false, false]);
    // Sent by the broker, never committed before the crash: stored.
    expect(c2.send({ id: 6, body: 'reading-6', dup: true }, { id: 7, body: 'reading-7' })).toEqual([true, true]);
    expect(spool.stats().messages).toBe(7);
    spool.close();
  });

  it('stores a new message redelivered under a packet id whose last use had the same digest (the packet-id wrap of a repeating sensor)', () => {
    const spool = open();
    const c1 = connection(spool);
    // Packet ids 1..200 then 1..100 again (the broker wrapped), every payload "ON" on one topic.
    for (let p = 1; p <= 300; p++) c1.send({ id: p <= 200 ? p : p - 200, body: 'ON' });
    const c2 = connection(spool);
    // Id 101 was last used at position 101 by another "ON": the message now redelivered under it was sent
    // after the wrap and never committed. The old window skipped it: a loss.
    expect(c2.send({ id: 101, body: 'ON', dup: true })).toEqual([true]);
    // Messages that were committed, redelivered: the digest repeats in the window, so they are stored too.
    const c3 = connection(spool);
    expect(c3.send({ id: 100, body: 'ON', dup: true })).toEqual([true]);
    spool.close();
  });

  it('stores every redelivery of a repeating payload, and skips where the digest is unique', () => {
    const spool = open();
    connection(spool).send({ id: 1, body: 'ON' }, { id: 2, body: 'ON' }, { id: 3, body: 'temp 21.5' }, { id: 4, body: 'ON' });
    const c2 = connection(spool);
    expect(c2.send({ id: 2, body: 'ON', dup: true })).toEqual([true]);
    // Unique digest and packet id: places the run at position 3; position 4 follows by order.
    expect(c2.send({ id: 3, body: 'temp 21.5', dup: true }, { id: 4, body: 'ON', dup: true })).toEqual([false, false]);
    spool.close();
  });

  it('compares only with the previous connection; a connection that committed nothing does not count', () => {
    const spool = open();
    connection(spool).send(...distinct([3]));
    connection(spool).send(...distinct([9]));
    expect(connection(spool).send({ id: 3, body: 'reading-3', dup: true })).toEqual([true]);

    const other = open();
    connection(other).send(...distinct([3]));
    connection(other).close(0); // connected, received nothing, wrote no PUBACK
    expect(connection(other).send({ id: 3, body: 'reading-3', dup: true })).toEqual([false]);
    spool.close();
    other.close();
  });

  it('never matches an entry older than the in-flight window (its PUBACK had certainly reached the broker)', () => {
    for (const [id, stored] of [
      [150, true],
      [250, false],
    ] as const) {
      const spool = open();
      const c1 = connection(spool, 100);
      for (let p = 1; p <= 300; p++) c1.send({ id: p, body: `reading-${p}` });
      // With at most 100 in flight, when position 300 arrived the PUBACKs up to 200 had been received.
      expect(connection(spool, 100).send({ id, body: `reading-${id}`, dup: true })).toEqual([stored]);
      spool.close();
    }
  });

  it("follows the broker's resend order: a redelivery out of order ends matching for the connection", () => {
    const spool = open();
    connection(spool).send(...distinct([1, 2, 3, 4, 5, 6]));
    const c2 = connection(spool);
    expect(c2.send({ id: 2, body: 'reading-2', dup: true })).toEqual([false]);
    // Position 3 must come next; 4 instead means the order does not hold: stored, and so is all that follows.
    expect(c2.send({ id: 4, body: 'reading-4', dup: true }, { id: 5, body: 'reading-5', dup: true })).toEqual([true, true]);
    spool.close();
  });

  it('stores a message at a position that was never committed, and goes on matching after it', () => {
    const spool = open();
    const c1 = connection(spool);
    c1.send({ id: 1, body: 'reading-1' }, { id: 2, body: 'reading-2' }, { id: 4, body: 'reading-4', position: 4 });
    const c2 = connection(spool);
    expect(
      c2.send(
        { id: 1, body: 'reading-1', dup: true },
        { id: 2, body: 'reading-2', dup: true },
        { id: 3, body: 'reading-3', dup: true },
        { id: 4, body: 'reading-4', dup: true },
      ),
    ).toEqual([false, false, true, false]);
    spool.close();
  });

  it('a first redelivery that matches no committed message ends matching: the committed ones would have come first', () => {
    const spool = open();
    connection(spool).send(...distinct([1, 2, 3]));
    const c2 = connection(spool);
    expect(c2.send({ id: 9, body: 'reading-9', dup: true }, { id: 2, body: 'reading-2', dup: true })).toEqual([true, true]);
    spool.close();
  });

  it('messages whose PUBACK was never written are certain even with a repeating payload, also after a restart', () => {
    const dir = tempDir();
    let spool = open(dir);
    const c1 = connection(spool);
    c1.send(...[1, 2, 3, 4, 5].map((id) => ({ id, body: 'ON' })));
    // The connection closed with PUBACKs written up to position 3: 4 and 5 were committed, never acknowledged.
    c1.close(3);
    spool.close();
    spool = open(dir);
    const c2 = connection(spool);
    expect(
      c2.send({ id: 3, body: 'ON', dup: true }, { id: 4, body: 'ON', dup: true }, { id: 5, body: 'ON', dup: true }, { id: 6, body: 'ON', dup: true }),
    ).toEqual([true, false, false, true]);
    spool.close();
  });

  it('a group commit holding a message and its redelivery (the connection closed while it waited) stores it once', () => {
    const spool = open();
    const c1 = connection(spool);
    c1.send(...distinct([1]));
    const waiting = c1.message({ id: 2, body: 'reading-2' });
    c1.close(1);
    const c2 = connection(spool);
    const redelivered = c2.message({ id: 2, body: 'reading-2', dup: true });
    expect(spool.append([waiting, redelivered]).map((r) => r.stored)).toEqual([true, false]);
    spool.close();
  });

  it('a transaction that fails leaves no trace in the window', () => {
    const spool = open();
    connection(spool).send(...distinct([1, 2]));
    const c2 = connection(spool);
    const broken = { ...c2.message({ id: 50, body: 'x' }), packetId: undefined, topic: null as unknown as string };
    expect(() => spool.append([c2.message({ id: 1, body: 'reading-1', dup: true, position: 1 }), broken])).toThrow();
    // Not consumed, not placed: the same redelivery and the next are skipped when they commit.
    expect(c2.send({ id: 1, body: 'reading-1', dup: true, position: 1 }, { id: 2, body: 'reading-2', dup: true })).toEqual([false, false]);
    expect(spool.stats().messages).toBe(2);
    spool.close();
  });
});
