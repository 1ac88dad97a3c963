import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { birthsFile } from './births.js';
import { bdSeqMetric, born, byAlias, EDGE, GROUP, logged, metric, observation as at, openRig, payload, type Rig } from '../../test/helpers/sparkplug-host.js';
import type { Resolution } from './types.js';

const dirs: string[] = [];
const rigs: Rig[] = [];

afterEach(() => {
  for (const r of rigs.splice(0)) r.host.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function births(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sparkplug-host-'));
  dirs.push(dir);
  return birthsFile(dir);
}

function rig(file: string, options: Parameters<typeof openRig>[1] = {}): Rig {
  const r = openRig(file, options);
  rigs.push(r);
  return r;
}

/** What each metric resolved to, as `name:datatype`, `-` for none. */
function names(r: Resolution): string[] | string {
  if (r.kind !== 'resolved') return r.kind;
  return r.births.map((b) => (b ? `${b.name}:${b.datatype}` : '-'));
}

const NBIRTH_1 = payload(0, [bdSeqMetric(3), born('Temp', 1, 9), born('Pressure', 2, 10), born('Node Control/Rebirth', 3, 11)]);
const DBIRTH_PUMP = payload(1, [born('Level', 10, 3), born('Running', 11, 11)]);

describe('SparkplugNodeHost: births, then data', () => {
  it('resolves data by alias with the births before it, births from their own names', () => {
    const { host } = rig(births());
    expect(names(host.observe(at(1, 'NBIRTH', NBIRTH_1), true))).toEqual(['bdSeq:8', 'Temp:9', 'Pressure:10', 'Node Control/Rebirth:11']);
    expect(names(host.observe(at(2, 'DBIRTH', DBIRTH_PUMP, { device: 'Pump' }), true))).toEqual(['Level:3', 'Running:11']);
    expect(names(host.observe(at(3, 'NDATA', payload(2, byAlias(2, 1))), true))).toEqual(['Pressure:10', 'Temp:9']);
    // A device's alias from its DBIRTH, else from the NBIRTH (aliases are unique per edge node).
    expect(names(host.observe(at(4, 'DDATA', payload(3, byAlias(11, 1)), { device: 'Pump' }), true))).toEqual(['Running:11', 'Temp:9']);
    // By name when there is no alias, the datatype the birth gave; a name nobody gave, from its own datatype.
    const named = [metric({ name: 'Temp' }), metric({ name: 'Level' }), metric({ name: 'Extra', datatype: 12 }), metric({ name: 'Vague' })];
    expect(names(host.observe(at(5, 'DDATA', payload(4, named), { device: 'Pump' }), true))).toEqual(['Temp:9', 'Level:3', 'Extra:12', '-']);
    expect(names(host.observe(at(6, 'NDATA', payload(5, byAlias(99, 10))), true))).toEqual(['-', '-']); // 10 is the Pump's, not the node's
    expect(host.observe({ spoolSeq: 7, messageId: 'm-7', topic: { type: 'STATE', hostId: 'scada' } }, true)).toEqual({ kind: 'resolved', births: [] });
  });

  it('keeps other edge nodes and groups apart', () => {
    const { host } = rig(births());
    host.observe(at(1, 'NBIRTH', NBIRTH_1), true);
    host.observe(at(2, 'NBIRTH', payload(0, [born('Speed', 1, 10)]), { edge: 'Line5' }), true);
    host.observe(at(3, 'NBIRTH', payload(0, [born('Flow', 1, 9)]), { group: 'Plant2' }), true);
    expect(names(host.observe(at(4, 'NDATA', payload(1, byAlias(1))), true))).toEqual(['Temp:9']);
    expect(names(host.observe(at(5, 'NDATA', payload(1, byAlias(1)), { edge: 'Line5' }), true))).toEqual(['Speed:10']);
    expect(names(host.observe(at(6, 'NDATA', payload(1, byAlias(1)), { group: 'Plant2' }), true))).toEqual(['Flow:9']);
    expect(names(host.observe(at(7, 'NDATA', payload(1, byAlias(1)), { edge: 'Line6' }), true))).toEqual(['-']);
  });

  it('resolves after a restart with the births seen before it, written before observe returned', () => {
    const file = births();
    const first = rig(file);
    first.host.observe(at(1, 'NBIRTH', NBIRTH_1), true);
    first.host.observe(at(2, 'DBIRTH', DBIRTH_PUMP, { device: 'Pump' }), true);
    // A second host on the file while the first still runs: what a crash right after these calls would leave.
    const second = rig(file);
    expect(names(second.host.observe(at(3, 'NDATA', payload(2, byAlias(1, 2))), true))).toEqual(['Temp:9', 'Pressure:10']);
    expect(names(second.host.observe(at(4, 'DDATA', payload(3, byAlias(10)), { device: 'Pump' }), true))).toEqual(['Level:3']);
  });

  it('does not use a DBIRTH older than the NBIRTH in effect, before or after a restart', () => {
    const file = births();
    const ddata = (seq: number) => at(seq, 'DDATA', payload(seq, byAlias(10)), { device: 'Pump' });
    const run = (r: Rig) => [3, 5, 7].map((s) => names(r.host.observe(ddata(s), false)));
    const first = rig(file);
    first.host.observe(at(1, 'NBIRTH', NBIRTH_1), false);
    first.host.observe(at(2, 'DBIRTH', DBIRTH_PUMP, { device: 'Pump' }), false);
    first.host.observe(at(4, 'NBIRTH', NBIRTH_1), false);
    first.host.observe(at(6, 'DBIRTH', payload(1, [born('Depth', 10, 4)]), { device: 'Pump' }), false);
    expect(run(first)).toEqual([['Level:3'], ['-'], ['Depth:4']]);
    first.host.close();
    rigs.splice(rigs.indexOf(first), 1);
    expect(run(rig(file))).toEqual([['Level:3'], ['-'], ['Depth:4']]);
  });
});

describe('SparkplugNodeHost: a backlog read by three runners', () => {
  /**
   * Births at 1 and 2, data 3..100, a new NBIRTH at 101 and DBIRTH at 104 with the aliases changed, data up to
   * 200; every tenth message from another edge node that never sent a birth. What each message must resolve to
   * depends on its place only.
   */
  function backlog() {
    const messages = [at(1, 'NBIRTH', payload(0, [born('A', 1, 9), born('B', 2, 10)])), at(2, 'DBIRTH', payload(1, [born('X', 10, 3)]), { device: 'd1' })];
    const expected = new Map<number, string[]>();
    for (let s = 3; s <= 200; s++) {
      if (s === 101) messages.push(at(s, 'NBIRTH', payload(0, [born('C', 1, 4), born('D', 3, 11)])));
      else if (s === 104) messages.push(at(s, 'DBIRTH', payload(1, [born('Y', 10, 12), born('Z', 2, 6)]), { device: 'd1' }));
      else if (s % 10 === 5) {
        messages.push(at(s, 'NDATA', payload(s % 256, byAlias(1)), { edge: 'Silent' }));
        expected.set(s, ['-']);
      } else if (s % 2 === 0) {
        messages.push(at(s, 'NDATA', payload(s % 256, byAlias(1, 2, 3))));
        expected.set(s, s < 101 ? ['A:9', 'B:10', '-'] : ['C:4', '-', 'D:11']);
      } else {
        messages.push(at(s, 'DDATA', payload(s % 256, byAlias(10, 2, 1)), { device: 'd1' }));
        // Between the NBIRTH at 101 and the DBIRTH at 104 the device has no birth in effect.
        expected.set(s, s < 101 ? ['X:3', 'B:10', 'A:9'] : s < 104 ? ['-', '-', 'C:4'] : ['Y:12', 'Z:6', 'C:4']);
      }
    }
    return { messages, expected };
  }

  /** A small deterministic generator, so that a failure can be reproduced from its seed. */
  function random(seed: number): () => number {
    let x = seed;
    return () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  }

  it.each([1, 2, 3, 4, 5, 6])('resolves each message with the births before it, however the runners interleave (seed %i)', (seed) => {
    const { messages, expected } = backlog();
    // A tiny cache: each edge node's births are read from the file again whenever the other one was used.
    const r = rig(births(), { cacheMetrics: seed % 2 === 0 ? 1 : 200_000, pruneIntervalMs: 10 });
    const next = random(seed);
    const cursors = [0, 0, 0];
    while (cursors.some((c) => c < messages.length)) {
      const runner = Math.floor(next() * 3);
      if (cursors[runner]! >= messages.length) continue;
      // Now and then a burst: one runner far ahead of the others.
      const steps = next() < 0.05 ? 40 : 1;
      for (let i = 0; i < steps && cursors[runner]! < messages.length; i++) {
        const m = messages[cursors[runner]!]!;
        const got = r.host.observe(m, runner === 0);
        const want = expected.get(m.spoolSeq);
        if (want) expect(names(got), `seq ${m.spoolSeq}, runner ${runner}`).toEqual(want);
        cursors[runner]! += 1;
      }
      // The spool holds what some runner has not done yet; the host prunes against it as it goes.
      r.oldest.seq = messages[Math.min(...cursors)]?.spoolSeq;
      r.clock.ms += 5;
    }
  });
});

describe('SparkplugNodeHost: deaths', () => {
  it('ignores an NDEATH whose bdSeq is not the NBIRTH\'s, logging it once', () => {
    const r = rig(births());
    r.host.observe(at(1, 'NBIRTH', NBIRTH_1), true); // bdSeq 3
    const stale = at(2, 'NDEATH', payload(undefined, [bdSeqMetric(2)]));
    expect(r.host.observe(stale, true)).toEqual({ kind: 'stale_death' });
    expect(r.host.observe(stale, false)).toEqual({ kind: 'stale_death' });
    expect(r.host.observe(stale, true)).toEqual({ kind: 'stale_death' }); // a retry
    expect(logged(r, 'SPARKPLUG_STALE_DEATH')).toMatchObject([{ group: GROUP, edgeNode: EDGE, bdSeq: '2', birthBdSeq: '3', message_id: 'm-2-NDEATH' }]);
    expect(names(r.host.observe(at(3, 'NDEATH', payload(undefined, [bdSeqMetric(3)])), true))).toEqual(['bdSeq:8']);
    // The next session: its NBIRTH's bdSeq is the one that counts.
    r.host.observe(at(4, 'NBIRTH', payload(0, [bdSeqMetric(4)])), true);
    expect(r.host.observe(at(5, 'NDEATH', payload(undefined, [bdSeqMetric(3)])), true)).toEqual({ kind: 'stale_death' });
    expect(names(r.host.observe(at(6, 'NDEATH', payload(undefined, [bdSeqMetric(4)])), true))).toEqual(['bdSeq:8']);
    // Without an NBIRTH to compare with, a death is taken as it comes.
    expect(names(r.host.observe(at(7, 'NDEATH', payload(undefined, [bdSeqMetric(9)]), { edge: 'Line9' }), true))).toEqual(['bdSeq:8']);
  });
});

describe('SparkplugNodeHost: pruning', () => {
  function count(file: string): number[] {
    const db = new Database(file, { readonly: true });
    try {
      return db.prepare('SELECT spool_seq FROM births ORDER BY spool_seq').pluck().all() as number[];
    } finally {
      db.close();
    }
  }

  it('deletes only the births no message still in the spool resolves with', () => {
    const file = births();
    const r = rig(file, { pruneIntervalMs: 60_000 });
    r.host.observe(at(1, 'NBIRTH', NBIRTH_1), false);
    r.host.observe(at(2, 'DBIRTH', DBIRTH_PUMP, { device: 'Pump' }), false);
    r.host.observe(at(3, 'DBIRTH', payload(2, [born('Gate', 20, 11)]), { device: 'Valve' }), false);
    r.host.observe(at(5, 'DBIRTH', payload(3, [born('Level', 10, 4)]), { device: 'Pump' }), false);
    r.host.observe(at(10, 'NBIRTH', payload(0, [born('Temp', 1, 10)])), false);
    r.host.observe(at(11, 'DBIRTH', payload(1, [born('Level', 10, 5)]), { device: 'Pump' }), false);
    const pump = (seq: number, ...aliases: number[]) => names(r.host.observe(at(seq, 'DDATA', payload(seq, byAlias(...aliases)), { device: 'Pump' }), false));
    const valve = (seq: number) => names(r.host.observe(at(seq, 'DDATA', payload(seq, byAlias(20)), { device: 'Valve' }), false));
    r.oldest.seq = 4; // data at 4 still pending: it needs the NBIRTH at 1 and the DBIRTHs at 2 and 3
    r.host.prune();
    expect(count(file)).toEqual([1, 2, 3, 5, 10, 11]);
    expect([pump(4, 10, 1), valve(6)]).toEqual([['Level:3', 'Temp:9'], ['Gate:11']]);
    r.oldest.seq = 7; // the Pump's DBIRTH at 5 replaced the one at 2
    r.clock.ms += 60_000; // observe prunes once the interval has passed
    expect([pump(7, 10), valve(8)]).toEqual([['Level:4'], ['Gate:11']]);
    expect(count(file)).toEqual([1, 3, 5, 10, 11]);
    r.oldest.seq = 12; // the NBIRTH at 10 replaced the edge node's births before it, its devices' included
    r.host.prune();
    expect(count(file)).toEqual([10, 11]);
    expect([pump(12, 10, 1), valve(13)]).toEqual([['Level:5', 'Temp:10'], ['-']]);
    r.oldest.seq = undefined; // an empty spool: the latest birth of each key stays for what comes next
    r.host.prune();
    expect(count(file)).toEqual([10, 11]);
  });

  it('skips a prune when the spool cannot say what it holds, and keeps resolving', () => {
    const file = births();
    const r = rig(file, {
      pruneIntervalMs: 1,
      oldestSpoolSeq: () => {
        throw new Error('the spool is closed');
      },
    });
    r.host.observe(at(1, 'NBIRTH', NBIRTH_1), false);
    r.host.observe(at(2, 'NBIRTH', NBIRTH_1), false);
    r.clock.ms += 10;
    expect(names(r.host.observe(at(3, 'NDATA', payload(1, byAlias(1))), false))).toEqual(['Temp:9']);
    expect(count(file)).toEqual([1, 2]);
  });

  it('does not record a birth again when a dead letter replayed brings it back at a new seq', () => {
    const r = rig(births());
    r.host.observe(at(1, 'NBIRTH', NBIRTH_1), false);
    r.host.observe(at(2, 'NBIRTH', payload(0, [born('Other', 1, 3)])), false);
    const replayed = { ...at(3, 'NBIRTH', NBIRTH_1), messageId: 'm-1-NBIRTH' };
    expect(names(r.host.observe(replayed, false))).toEqual(['bdSeq:8', 'Temp:9', 'Pressure:10', 'Node Control/Rebirth:11']);
    expect(names(r.host.observe(at(4, 'NDATA', payload(1, byAlias(1))), false))).toEqual(['Other:3']);
  });

  it('empties a births file kept from another spool, whose seqs started again', () => {
    const file = births();
    const first = rig(file, { spoolId: 'spool-a' });
    first.host.observe(at(1, 'NBIRTH', NBIRTH_1), false);
    first.host.close();
    rigs.splice(rigs.indexOf(first), 1);
    expect(names(rig(file, { spoolId: 'spool-a' }).host.observe(at(2, 'NDATA', payload(1, byAlias(1))), false))).toEqual(['Temp:9']);
    expect(names(rig(file, { spoolId: 'spool-b' }).host.observe(at(2, 'NDATA', payload(1, byAlias(1))), false))).toEqual(['-']);
  });
});
