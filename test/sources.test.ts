/**
 * The source table ("which sensor went quiet?", docs/operations.md, "Silent sources"): the tracker's rates, order
 * and limit with an injected clock, its file set aside when damaged, and the real node in embedded mode: topics
 * listed by GET /api/sources, a topic going silent, SOURCES_MAX, and the table kept across a SIGTERM restart.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { Metrics } from '../src/core/metrics.js';
import { SourceStore } from '../src/sources/store.js';
import { SourceWatch, sourcesFile } from '../src/sources/sources.js';
import { RATE_TAU_SECONDS, SourceTracker, type SourcesReport } from '../src/sources/tracker.js';
import { captureLogs } from './helpers/log-capture.js';
import { runCli, baseEnv, startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-sources-'));
  cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('SourceTracker', () => {
  it('converges to a steady rate and decays once the topic stops', () => {
    let now = 1_000_000;
    const t = new SourceTracker({ max: 10, silentAfterSeconds: 60, now: () => now });
    // 2 messages per second for 30 minutes (6 time constants): the rate is within 1% of 120 per minute.
    for (let i = 0; i < 2 * 1800; i++) {
      now += 500;
      t.observe('a', now);
    }
    const steady = t.report().sources[0]!;
    expect(steady.ratePerMinute).toBeGreaterThan(118.8);
    expect(steady.ratePerMinute).toBeLessThan(121.2);
    expect(steady.messages).toBe(3600);
    // One time constant of silence: the rate read now is e^-1 of it.
    now += RATE_TAU_SECONDS * 1000;
    const decayed = t.report().sources[0]!;
    expect(decayed.ratePerMinute / steady.ratePerMinute).toBeCloseTo(Math.exp(-1), 3);
    expect(decayed.quietSeconds).toBe(RATE_TAU_SECONDS);
    expect(decayed.silent).toBe(true);
  });

  it('lists silent topics first, then by topic; silentOnly gives only those', () => {
    let now = 10_000_000;
    const t = new SourceTracker({ max: 10, silentAfterSeconds: 60, now: () => now });
    t.observe('z/old', now);
    t.observe('b/old', now);
    now += 61_000;
    t.observe('c/new', now);
    t.observe('a/new', now);
    const r = t.report();
    expect(r.sources.map((s) => [s.topic, s.silent])).toEqual([
      ['b/old', true],
      ['z/old', true],
      ['a/new', false],
      ['c/new', false],
    ]);
    expect(r).toMatchObject({ silentAfterSeconds: 60, tracked: 4, untracked: 0, silent: 2 });
    expect(t.silentCount()).toBe(2);
    expect(t.report(true).sources.map((s) => s.topic)).toEqual(['b/old', 'z/old']);
    expect(r.sources[0]!.lastSeenAt).toBe(new Date(10_000_000).toISOString());
    // Exactly SILENT_AFTER_SECONDS quiet is not yet silent.
    now += 60_000;
    expect(t.report().sources.find((s) => s.topic === 'a/new')!.silent).toBe(false);
    now += 1;
    expect(t.report().sources.find((s) => s.topic === 'a/new')!.silent).toBe(true);
  });

  it('counts, without tracking, topics beyond max; a clock stepped back does not move lastSeenAt back', () => {
    let untracked = 0;
    const now = 5_000_000;
    const t = new SourceTracker({ max: 2, silentAfterSeconds: 60, now: () => now, onUntracked: () => (untracked += 1) });
    t.observe('a', now);
    t.observe('b', now);
    t.observe('c', now);
    t.observe('c', now);
    t.observe('a', now - 30_000);
    const r = t.report();
    expect(r.sources.map((s) => s.topic)).toEqual(['a', 'b']);
    expect(r.untracked).toBe(2);
    expect(untracked).toBe(2);
    expect(r.sources[0]).toMatchObject({ messages: 2, lastSeenAt: new Date(now).toISOString() });
  });

  it('hands out changed entries once, and keeps the most recent ones when loading more than max', () => {
    const t = new SourceTracker({ max: 2, silentAfterSeconds: 60, now: () => 0 });
    t.observe('a', 1);
    t.observe('a', 2);
    t.observe('b', 3);
    expect(t.takeDirty().map((e) => e.topic)).toEqual(['a', 'b']);
    expect(t.takeDirty()).toEqual([]);
    const fresh = new SourceTracker({ max: 2, silentAfterSeconds: 60, now: () => 0 });
    fresh.load([
      { topic: 'old', lastSeenAt: 1, rate: 0, rateAt: 1, messages: 1 },
      { topic: 'new', lastSeenAt: 3, rate: 0, rateAt: 3, messages: 1 },
      { topic: 'mid', lastSeenAt: 2, rate: 0, rateAt: 2, messages: 1 },
    ]);
    expect(fresh.report().sources.map((s) => s.topic)).toEqual(['mid', 'new']);
  });
});

describe('source table file', () => {
  it('saves and loads the table; a damaged file is set aside, logged, and the table starts empty', () => {
    const dir = tempDir();
    const { logger, lines } = captureLogs();
    const config = { SOURCES_MAX: 10, SILENT_AFTER_SECONDS: 60 };
    const first = new SourceWatch({ config, dataDir: dir, metrics: new Metrics(), logger });
    first.start();
    first.tracker.observe('s/1', 1_700_000_000_000);
    first.close();
    const second = new SourceWatch({ config, dataDir: dir, metrics: new Metrics(), logger });
    second.start();
    expect(second.report(false).sources).toMatchObject([{ topic: 's/1', messages: 1, lastSeenAt: new Date(1_700_000_000_000).toISOString() }]);
    second.close();

    fs.rmSync(sourcesFile(dir) + '-wal', { force: true });
    fs.rmSync(sourcesFile(dir) + '-shm', { force: true });
    fs.writeFileSync(sourcesFile(dir), 'not a database, just bytes '.repeat(200));
    const third = new SourceWatch({ config, dataDir: dir, metrics: new Metrics(), logger });
    third.start();
    expect(third.report(false).tracked).toBe(0);
    third.close();
    const warning = lines.find((l) => typeof l.setAside === 'string');
    expect(warning).toMatchObject({ code: 'SOURCES_STATE_DAMAGED', file: sourcesFile(dir) });
    expect(fs.readFileSync(warning!.setAside as string, 'utf8')).toContain('not a database');
    // The new file is a usable table.
    const store = SourceStore.open(sourcesFile(dir));
    expect(store.load()).toEqual([]);
    store.close();
  });
});

async function sources(node: NodeProcess, query = ''): Promise<SourcesReport> {
  const res = await fetch(`http://127.0.0.1:${node.httpPort}/api/sources${query}`);
  expect(res.status).toBe(200);
  return (await res.json()) as SourcesReport;
}

async function started(env: Record<string, string>, dataDir?: string): Promise<NodeProcess> {
  const node = await startNode({ MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on', ...env }, dataDir ? { dataDir } : {});
  cleanups.push(() => node.kill());
  await node.waitReady();
  return node;
}

async function client(node: NodeProcess): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 });
  cleanups.push(() => c.endAsync(true));
  return c;
}

describe('GET /api/sources on the node', () => {
  it('lists both topics; the one that stops goes silent, first, in ?silent=true and in the gauge', async () => {
    const node = await started({ SILENT_AFTER_SECONDS: '2' });
    const c = await client(node);
    await c.publishAsync('plant/a', 'x', { qos: 1 });
    await c.publishAsync('plant/b', 'x', { qos: 1 });
    await c.publishAsync('plant/b', 'y', { qos: 1 });
    const r = await sources(node);
    expect(r).toMatchObject({ silentAfterSeconds: 2, tracked: 2, untracked: 0, silent: 0 });
    expect(r.sources.map((s) => [s.topic, s.messages, s.silent])).toEqual([
      ['plant/a', 1, false],
      ['plant/b', 2, false],
    ]);
    expect(Date.parse(r.sources[0]!.lastSeenAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(r.sources[1]!.ratePerMinute).toBeGreaterThan(0);
    expect(await node.metric('mqtt_ingest_sources_tracked')).toBe(2);
    expect(await node.metric('mqtt_ingest_sources_silent')).toBe(0);

    // plant/b keeps talking, plant/a stops: after 2 s it is silent.
    const silent = await waitFor(async () => {
      await c.publishAsync('plant/b', 'z', { qos: 1 });
      const now = await sources(node);
      return now.silent === 1 ? now : undefined;
    }, 10_000, 'plant/a silent');
    expect(silent.sources.map((s) => [s.topic, s.silent])).toEqual([
      ['plant/a', true],
      ['plant/b', false],
    ]);
    expect(silent.sources[0]!.quietSeconds).toBeGreaterThan(2);
    const only = await sources(node, '?silent=true');
    expect(only.sources.map((s) => s.topic)).toEqual(['plant/a']);
    expect(only.silent).toBe(1);
    expect(await node.metric('mqtt_ingest_sources_silent')).toBe(1);
  });

  it('counts a topic beyond SOURCES_MAX as untracked', async () => {
    const node = await started({ SOURCES_MAX: '2' });
    const c = await client(node);
    for (const t of ['s/1', 's/2', 's/3', 's/3']) await c.publishAsync(t, 'x', { qos: 1 });
    const r = await sources(node);
    expect(r.sources.map((s) => s.topic)).toEqual(['s/1', 's/2']);
    expect(r).toMatchObject({ tracked: 2, untracked: 2 });
    expect(await node.metric('mqtt_ingest_sources_untracked_total')).toBe(2);
  });

  it('keeps the table across a SIGTERM restart', async () => {
    const first = await started({});
    const c = await client(first);
    await c.publishAsync('kept/1', 'x', { qos: 1 });
    await c.publishAsync('kept/2', 'x', { qos: 1 });
    const before = await sources(first);
    await c.endAsync(true);
    expect(await first.stop()).toBe(0);
    const second = await started({}, first.dataDir);
    const after = await sources(second);
    expect(after.sources.map((s) => [s.topic, s.lastSeenAt, s.messages])).toEqual(before.sources.map((s) => [s.topic, s.lastSeenAt, s.messages]));
    expect(after.tracked).toBe(2);
  });

  it('after a SIGKILL keeps what the last 10-second save wrote', async () => {
    const first = await started({});
    const c = await client(first);
    await c.publishAsync('saved/1', 'x', { qos: 1 });
    const before = await sources(first);
    // The periodic save has run once the file holds the topic; only then is the node killed.
    await waitFor(() => {
      const store = SourceStore.open(sourcesFile(first.dataDir));
      try {
        return store.load().some((e) => e.topic === 'saved/1');
      } finally {
        store.close();
      }
    }, 15_000, 'the periodic save');
    await c.endAsync(true);
    await first.kill();
    const second = await started({}, first.dataDir);
    const after = await sources(second);
    expect(after.sources.map((s) => [s.topic, s.lastSeenAt, s.messages])).toEqual(before.sources.map((s) => [s.topic, s.lastSeenAt, s.messages]));
  });
});

describe('check-config', () => {
  it('refuses invalid SOURCES_MAX and SILENT_AFTER_SECONDS, naming them', async () => {
    const r = await runCli(['check-config'], baseEnv({ DATA_DIR: tempDir(), MQTT_BROKER_MODE: 'embedded', SOURCES_MAX: '0', SILENT_AFTER_SECONDS: 'ten' }));
    expect(r.code).not.toBe(0);
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/SOURCES_MAX.*a whole number from 1 to 1000000/);
    expect(out).toMatch(/SILENT_AFTER_SECONDS.*a whole number from 1 to 31536000/);
  });
});
