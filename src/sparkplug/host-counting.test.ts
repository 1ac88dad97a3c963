import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { birthsFile } from './births.js';
import { bdSeqMetric, born, byAlias, counted, EDGE, GROUP, logged, observation as at, openRig, payload, type Rig } from '../../test/helpers/sparkplug-host.js';

const dirs: string[] = [];
const rigs: Rig[] = [];

afterEach(() => {
  for (const r of rigs.splice(0)) r.host.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function rig(file?: string): Rig {
  if (file === undefined) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sparkplug-count-'));
    dirs.push(dir);
    file = birthsFile(dir);
  }
  const r = openRig(file);
  rigs.push(r);
  return r;
}

function restart(r: Rig): Rig {
  r.host.close();
  rigs.splice(rigs.indexOf(r), 1);
  return rig(r.file);
}

const NBIRTH = payload(0, [bdSeqMetric(1), born('Temp', 1, 9)]);
const ndata = (spoolSeq: number, seq: number, edge = EDGE) => at(spoolSeq, 'NDATA', payload(seq, byAlias(1)), { edge });
const ddata = (spoolSeq: number, seq: number) => at(spoolSeq, 'DDATA', payload(seq, byAlias(1)), { device: 'Pump' });

describe('SparkplugNodeHost: seq gaps', () => {
  it('counts a gap once, by the counting caller only, and logs it naming the edge node', async () => {
    const r = rig();
    const messages = [at(1, 'NBIRTH', NBIRTH), ndata(2, 1), at(3, 'DBIRTH', payload(2, [born('Level', 2, 3)]), { device: 'Pump' }), ddata(4, 3), ndata(5, 5), ndata(6, 6)];
    for (const m of messages) {
      r.host.observe(m, false);
      r.host.observe(m, true);
      r.host.observe(m, false);
    }
    expect(await counted(r.metrics.sparkplugSeqGaps)).toBe(1);
    expect(logged(r, 'SPARKPLUG_SEQ_GAP')).toMatchObject([{ group: GROUP, edgeNode: EDGE, expected: 4, got: 5, message_id: 'm-5-NDATA', suppressed: 0 }]);
  });

  it('takes 255 → 0 as the next seq, an NBIRTH as a new start, and passes over NDEATH and commands', async () => {
    const r = rig();
    const messages = [
      at(1, 'NBIRTH', NBIRTH), ndata(2, 1), // a seq the birth set
      ...[254, 255, 0, 1].map((seq, i) => ndata(10 + i, seq)), // one gap (1 → 254), then none across the wrap
      at(20, 'NDEATH', payload(undefined, [bdSeqMetric(1)])),
      at(21, 'NCMD', payload(undefined, [born('Node Control/Rebirth', undefined, 11)])),
      at(22, 'NBIRTH', NBIRTH), ndata(23, 1), ddata(24, 2),
    ];
    for (const m of messages) r.host.observe(m, true);
    expect(await counted(r.metrics.sparkplugSeqGaps)).toBe(1);
    expect(logged(r, 'SPARKPLUG_SEQ_GAP')).toMatchObject([{ expected: 2, got: 254 }]);
  });

  it('keeps each edge node\'s sequence apart and logs each at most once a minute', async () => {
    const r = rig();
    r.host.observe(at(1, 'NBIRTH', NBIRTH), true);
    r.host.observe(at(2, 'NBIRTH', NBIRTH, { edge: 'Line5' }), true);
    r.host.observe(ndata(3, 2), true); // gap
    r.host.observe(ndata(4, 1, 'Line5'), true);
    r.host.observe(ndata(5, 5), true); // gap, not logged
    r.host.observe(ndata(6, 3, 'Line5'), true); // gap on the other edge node: logged
    r.clock.ms += 59_000;
    r.host.observe(ndata(7, 9), true); // gap, not logged
    r.clock.ms += 1_000;
    r.host.observe(ndata(8, 20), true); // a minute after the first line
    expect(await counted(r.metrics.sparkplugSeqGaps)).toBe(5);
    expect(logged(r, 'SPARKPLUG_SEQ_GAP').map((l) => [l.edgeNode, l.expected, l.got, l.suppressed])).toEqual([
      [EDGE, 1, 2, 0],
      ['Line5', 2, 3, 0],
      [EDGE, 10, 20, 2],
    ]);
  });

  it('does not count a message again when it is routed again (a retry, a restart before its acknowledgement)', async () => {
    const r = rig();
    for (const m of [at(1, 'NBIRTH', NBIRTH), ndata(2, 1), ndata(3, 3)]) r.host.observe(m, true);
    r.host.observe(ndata(2, 1), true);
    r.host.observe(ndata(3, 3), true);
    expect(await counted(r.metrics.sparkplugSeqGaps)).toBe(1);
    const again = restart(r);
    again.host.observe(ndata(3, 3), true);
    again.host.observe(ndata(4, 4), true);
    expect(await counted(again.metrics.sparkplugSeqGaps)).toBe(0);
  });

  it('compares the first message after a restart with the last seq before it', async () => {
    const first = rig();
    for (const m of [at(1, 'NBIRTH', NBIRTH), ndata(2, 1), ndata(3, 2)]) first.host.observe(m, true);
    const second = restart(first);
    second.host.observe(ndata(4, 3), true);
    expect(await counted(second.metrics.sparkplugSeqGaps)).toBe(0);
    second.host.observe(ndata(5, 7), true);
    expect(await counted(second.metrics.sparkplugSeqGaps)).toBe(1);
    expect(logged(second, 'SPARKPLUG_SEQ_GAP')).toMatchObject([{ expected: 4, got: 7 }]);
  });

  it('writes the last seqs at the end of the turn, without waiting for close', async () => {
    const first = rig();
    first.host.observe(ndata(1, 0), true); // before any birth: its metric is unresolved
    await new Promise((resolve) => setImmediate(resolve));
    // A second host on the file while the first still runs (never closed): what a crash now would leave.
    const second = rig(first.file);
    second.host.observe(ndata(1, 0), true); // counted before the "crash": not again
    expect(await counted(second.metrics.sparkplugUnresolved)).toBe(0);
    second.host.observe(ndata(2, 5), true);
    expect(logged(second, 'SPARKPLUG_SEQ_GAP')).toMatchObject([{ expected: 1, got: 5 }]);
  });
});

describe('SparkplugNodeHost: unresolved metrics', () => {
  it('counts each metric no birth resolves, once, by the counting caller only', async () => {
    const r = rig();
    const messages = [
      ndata(1, 0), // before any birth
      at(2, 'NBIRTH', NBIRTH),
      at(3, 'NDATA', payload(1, byAlias(1, 7, 8))),
      at(4, 'DDATA', payload(2, byAlias(1, 9)), { device: 'Pump' }),
      at(5, 'NDEATH', payload(undefined, [bdSeqMetric(1)])),
    ];
    for (const m of messages) for (const counting of [false, true, false, true]) r.host.observe(m, counting);
    expect(await counted(r.metrics.sparkplugUnresolved)).toBe(4);
  });
});
