import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import protobuf from 'protobufjs';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.js';
import { birthsFile } from './births.js';
import { sparkplugHostSettings } from './config.js';
import { bdSeqMetric, born, byAlias, counted, logged, observation as at, openRig, payload, type Rig } from '../../test/helpers/sparkplug-host.js';
import { REBIRTH_INTERVAL_MS, rebirthPayload, rebirthTopic } from './host-rebirth.js';
import type { Resolution } from './types.js';

const dirs: string[] = [];
const rigs: Rig[] = [];

afterEach(() => {
  for (const r of rigs.splice(0)) r.host.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function rig(options: Parameters<typeof openRig>[1] = { rebirth: true }): Rig {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sparkplug-rebirth-'));
  dirs.push(dir);
  const r = openRig(birthsFile(dir), options);
  rigs.push(r);
  return r;
}

function names(r: Resolution): string[] | Resolution {
  if (r.kind !== 'resolved') return r;
  return r.births.map((b) => (b ? b.name : '-'));
}

const NBIRTH = payload(0, [bdSeqMetric(1), born('Temp', 1, 9), born('Flow', 5, 10)]);
const ndata = (spoolSeq: number, ...aliases: number[]) => at(spoolSeq, 'NDATA', payload(spoolSeq % 256, byAlias(...aliases)));

describe('SparkplugNodeHost: rebirth requests', () => {
  it('never waits nor asks with SPARKPLUG_REBIRTH off', () => {
    const r = rig({ rebirth: false });
    expect(names(r.host.observe(ndata(1, 1), true))).toEqual(['-']);
    r.host.observe(at(2, 'NBIRTH', NBIRTH), true);
    expect(names(r.host.observe(ndata(3, 1, 7), true))).toEqual(['Temp', '-']);
    expect(r.requests).toEqual([]);
  });

  it('asks for a rebirth on data before any birth, holds the data, and resolves it with the birth that follows', async () => {
    const r = rig();
    const until = r.clock.ms + 30_000;
    expect(r.host.observe(ndata(1, 1, 5), true)).toEqual({ kind: 'wait', untilMs: until });
    expect(r.requests).toEqual(['Plant1/Line4']);
    expect(logged(r, 'SPARKPLUG_REBIRTH_REQUESTED')).toMatchObject([{ group: 'Plant1', edgeNode: 'Line4', reason: 'no_birth', message_id: 'm-1-NDATA', waitMs: 30_000 }]);
    r.clock.ms += 1_000;
    // Any caller gets the same deadline for a waiting message; the next data of the edge node waits for it too.
    expect(r.host.observe(ndata(1, 1, 5), false)).toEqual({ kind: 'wait', untilMs: until });
    expect(r.host.observe(ndata(2, 5), true)).toEqual({ kind: 'wait', untilMs: until });
    expect(r.requests).toHaveLength(1);
    // The edge node answers: its NBIRTH comes later in the spool.
    expect(names(r.host.observe(at(3, 'NBIRTH', NBIRTH), true))).toEqual(['bdSeq', 'Temp', 'Flow']);
    for (const counting of [false, true, false]) {
      expect(names(r.host.observe(ndata(1, 1, 5), counting))).toEqual(['Temp', 'Flow']);
      expect(names(r.host.observe(ndata(2, 5), counting))).toEqual(['Flow']);
    }
    expect(names(r.host.observe(ndata(4, 1), true))).toEqual(['Temp']);
    expect(await counted(r.metrics.sparkplugUnresolved)).toBe(0);
    expect(r.requests).toHaveLength(1);
  });

  it('resolves with what there is once the deadline has passed, and asks an edge node at most once per 30 s', async () => {
    const r = rig({ rebirth: true, birthWaitMs: 10_000 });
    const t0 = r.clock.ms;
    expect(r.host.observe(ndata(1, 1), true)).toEqual({ kind: 'wait', untilMs: t0 + 10_000 });
    r.clock.ms = t0 + 9_999;
    expect(r.host.observe(ndata(1, 1), false)).toEqual({ kind: 'wait', untilMs: t0 + 10_000 });
    r.clock.ms = t0 + 10_000;
    expect(names(r.host.observe(ndata(1, 1), false))).toEqual(['-']);
    expect(names(r.host.observe(ndata(1, 1), true))).toEqual(['-']);
    expect(names(r.host.observe(ndata(1, 1), true))).toEqual(['-']);
    // Asked less than 30 s ago and the wait is over: no new request, no new wait.
    expect(names(r.host.observe(ndata(2, 1), true))).toEqual(['-']);
    expect(r.requests).toHaveLength(1);
    r.clock.ms = t0 + REBIRTH_INTERVAL_MS;
    expect(r.host.observe(ndata(3, 1), true)).toEqual({ kind: 'wait', untilMs: t0 + REBIRTH_INTERVAL_MS + 10_000 });
    expect(r.requests).toEqual(['Plant1/Line4', 'Plant1/Line4']);
    // Another edge node is asked on its own.
    expect(r.host.observe(at(4, 'NDATA', payload(0, byAlias(1)), { edge: 'Line5' }), true)).toMatchObject({ kind: 'wait' });
    expect(r.requests).toEqual(['Plant1/Line4', 'Plant1/Line4', 'Plant1/Line5']);
    // The metrics left unresolved are counted once each, when their message went.
    expect(await counted(r.metrics.sparkplugUnresolved)).toBe(2);
  });

  it('asks on an alias no birth names, and resolves each alias with the birth before the message first', () => {
    const r = rig();
    r.host.observe(at(1, 'NBIRTH', NBIRTH), true);
    expect(r.host.observe(ndata(2, 1, 7), true)).toMatchObject({ kind: 'wait' });
    expect(logged(r, 'SPARKPLUG_REBIRTH_REQUESTED')).toMatchObject([{ reason: 'unknown_alias' }]);
    // The new birth numbers the aliases otherwise: what the message said of alias 1, it said under the old birth.
    r.host.observe(at(3, 'NBIRTH', payload(0, [bdSeqMetric(2), born('Speed', 1, 9), born('Torque', 7, 10)])), true);
    expect(names(r.host.observe(ndata(2, 1, 7), true))).toEqual(['Temp', 'Torque']);
    // The request was answered: data after it that the new birth does not resolve goes at once.
    expect(names(r.host.observe(ndata(4, 1, 8), true))).toEqual(['Speed', '-']);
    expect(r.requests).toHaveLength(1);
  });

  it('holds device data until its device\'s DBIRTH after the new NBIRTH', () => {
    const r = rig();
    r.host.observe(at(1, 'NBIRTH', NBIRTH), true);
    const ddata = at(2, 'DDATA', payload(1, byAlias(10, 1)), { device: 'Pump' });
    const wait = r.host.observe(ddata, true);
    expect(wait).toMatchObject({ kind: 'wait' });
    r.host.observe(at(3, 'NBIRTH', NBIRTH), true);
    r.host.observe(at(4, 'DBIRTH', payload(1, [born('Gate', 11, 11)]), { device: 'Valve' }), true);
    expect(r.host.observe(ddata, false)).toEqual(wait);
    r.host.observe(at(5, 'DBIRTH', payload(2, [born('Level', 10, 3)]), { device: 'Pump' }), true);
    expect(names(r.host.observe(ddata, false))).toEqual(['Level', 'Temp']);
  });

  it('does not ask when a runner further on has already recorded a birth after the message', () => {
    const r = rig();
    r.host.observe(at(1, 'NBIRTH', NBIRTH), false); // a runner ahead of the counting one
    r.host.observe(at(5, 'NBIRTH', payload(0, [born('Speed', 9, 9)])), false);
    r.host.observe(at(1, 'NBIRTH', NBIRTH), true);
    expect(names(r.host.observe(ndata(2, 9), true))).toEqual(['Speed']);
    expect(names(r.host.observe(ndata(2, 9), false))).toEqual(['Speed']);
    expect(r.requests).toEqual([]);
  });
});

describe('the rebirth command', () => {
  // The part of sparkplug_b.proto a rebirth command uses, written out independently of the encoder.
  const Payload = protobuf.Root.fromJSON({
    nested: {
      Payload: {
        fields: { timestamp: { type: 'uint64', id: 1 }, metrics: { rule: 'repeated', type: 'Metric', id: 2 }, seq: { type: 'uint64', id: 3 } },
        nested: {
          Metric: {
            fields: {
              name: { type: 'string', id: 1 }, alias: { type: 'uint64', id: 2 }, timestamp: { type: 'uint64', id: 3 },
              datatype: { type: 'uint32', id: 4 }, intValue: { type: 'uint32', id: 10 }, booleanValue: { type: 'bool', id: 14 },
            },
          },
        },
      },
    },
  }).lookupType('Payload');

  it('is an NCMD to the edge node with the metric Node Control/Rebirth, Boolean true', () => {
    expect(rebirthTopic('Plant1', 'Line4')).toBe('spBv1.0/Plant1/NCMD/Line4');
    const decoded = Payload.toObject(Payload.decode(rebirthPayload(1_764_000_000_123)), { longs: String });
    expect(decoded).toEqual({
      timestamp: '1764000000123',
      metrics: [{ name: 'Node Control/Rebirth', timestamp: '1764000000123', datatype: 11, booleanValue: true }],
    });
  });
});

describe('the Sparkplug settings', () => {
  const load = (env: Record<string, string>) => loadConfig({ hostname: 'node-1', env }).config;

  it('default to listening only, with 30 s of wait', () => {
    const c = load({});
    expect([c.SPARKPLUG_REBIRTH, c.SPARKPLUG_BIRTH_WAIT_SECONDS]).toEqual([false, 30]);
    expect(sparkplugHostSettings(c)).toEqual({ rebirth: false, birthWaitMs: 30_000 });
  });

  it('read on/off and whole seconds from 1 to 3600', () => {
    expect(sparkplugHostSettings(load({ SPARKPLUG_REBIRTH: 'on', SPARKPLUG_BIRTH_WAIT_SECONDS: '3600' }))).toEqual({ rebirth: true, birthWaitMs: 3_600_000 });
    expect(load({ SPARKPLUG_REBIRTH: 'OFF' }).SPARKPLUG_REBIRTH).toBe(false);
    const bads: Record<string, string>[] = [{ SPARKPLUG_REBIRTH: 'maybe' }, { SPARKPLUG_BIRTH_WAIT_SECONDS: '0' }, { SPARKPLUG_BIRTH_WAIT_SECONDS: '3601' }, { SPARKPLUG_BIRTH_WAIT_SECONDS: '1.5' }];
    for (const bad of bads) {
      expect(() => load(bad), JSON.stringify(bad)).toThrow(/SPARKPLUG_/);
    }
  });
});
