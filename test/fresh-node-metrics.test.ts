/**
 * What a fresh node's /metrics says before anything happened, for the alerts of deploy/monitoring/alerts.yml.
 * mqtt_ingest_dead_letters_total{sink,reason} is exported at 0 for every enabled sink and every reason it can
 * dead-letter with, from the node's first scrape: Prometheus's increase() sees no increase in a series' first sample,
 * so a series that appeared at 1 would hide the first dead letter of a reason from MqttIngestDeadLetters. The
 * reasons are checked against the sinks' sources, the zero series against a real node, and the alert against a real
 * Prometheus scraping it. mqtt_ingest_ready follows readiness at every scrape, also when no probe calls /readyz.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SINK_NAMES, type SinkName } from '../src/core/message.js';
import { Metrics, ROUTE_DEAD_LETTER_REASONS, SINK_DEAD_LETTER_REASONS, SPOOL_DEAD_LETTER_REASONS } from '../src/core/metrics.js';
import { ROOT, startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';
import { hasPrometheus, startPrometheus, type TestPrometheus } from './helpers/prometheus.js';
import { serviceAvailable } from './helpers/skip.js';

const SRC = path.join(ROOT, 'src');
const read = (...p: string[]) => readFileSync(path.join(SRC, ...p), 'utf8');
const literals = (text: string): string[] => [...text.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]!);

/** The quoted members of `export type NAME = 'a' | 'b';` in `text`. */
function typeMembers(text: string, name: string): string[] {
  const m = new RegExp(`export type ${name} =([^;]+);`).exec(text);
  if (!m) throw new Error(`no type ${name}`);
  return literals(m[1]!);
}

/** Every non-test .ts file under `dir`. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

/** What `cls.reason` can be where a sink rejects a message for a classified error: the error classes of kind `invalid`. */
const INVALID_CLASS_REASONS: Partial<Record<SinkName, () => string[]>> = {
  pubsub: () => literals(/kind: 'invalid'; reason: ([^;]+);/.exec(read('sinks', 'pubsub', 'classify.ts'))![1]!),
  bigquery: () => typeMembers(read('sinks', 'bigquery', 'classify.ts'), 'InvalidReason'),
};

/** The reasons the sources of one sink pass to `rejected(reason, detail)`. */
function rejectionReasons(sink: SinkName): string[] {
  const found: string[] = [];
  for (const file of sourceFiles(path.join(SRC, 'sinks', sink))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/\brejected\(\s*([^,]+?),/g)) {
      const arg = m[1]!.trim();
      if (arg.includes("'")) found.push(...literals(arg));
      else if (arg === 'cls.reason' && INVALID_CLASS_REASONS[sink]) found.push(...INVALID_CLASS_REASONS[sink]!());
      // bigquery-sink.ts messageOutcome: a message of several rows takes the reason one of its rows was refused for.
      else if (arg === 'o.reason' && sink === 'bigquery') continue;
      else throw new Error(`${path.relative(ROOT, file)}: rejected(${arg}, …): add its reasons to SINK_DEAD_LETTER_REASONS (src/core/metrics.ts) and here`);
    }
  }
  return [...new Set(found)].sort();
}

describe('the reasons a node can dead-letter with', () => {
  it.each(SINK_NAMES)('%s: SINK_DEAD_LETTER_REASONS lists exactly the reasons its sources reject with', (sink) => {
    expect([...SINK_DEAD_LETTER_REASONS[sink]].sort()).toEqual(rejectionReasons(sink));
  });

  it("the routes' and the spool's reasons are the ones their sources use", () => {
    expect([...ROUTE_DEAD_LETTER_REASONS].sort()).toEqual(typeMembers(read('routes', 'types.ts'), 'RouteDeadLetterReason').sort());
    const spool = [...read('spool', 'message-store.ts').matchAll(/reason: '([a-z_]+)'/g)].map((m) => m[1]);
    expect([...new Set(spool)]).toEqual([...SPOOL_DEAD_LETTER_REASONS]);
  });

  it('initDeadLetters shows every reason of the given sinks at 0, and nothing for the others', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.initDeadLetters(['pubsub', 'file'], { routes: false });
    const values = (await metrics.deadLetters.get()).values.map((v) => `${v.labels.sink}/${v.labels.reason}=${v.value}`);
    expect(values.sort()).toEqual(['file/corrupt=0', 'pubsub/attribute_too_long=0', 'pubsub/corrupt=0', 'pubsub/invalid_argument=0', 'pubsub/too_large=0']);
    metrics.initDeadLetters(['bigquery'], { routes: true });
    const bigquery = (await metrics.deadLetters.get()).values.filter((v) => v.labels.sink === 'bigquery').map((v) => v.labels.reason);
    expect(bigquery.sort()).toEqual(['corrupt', 'decode_failed', 'field_invalid', 'invalid', 'no_route', 'rejected', 'too_large']);
  });
});

/** The `reason` labels of the node's mqtt_ingest_dead_letters_total series for `sink`, with their values. */
function deadLetterSeries(text: string, sink: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^mqtt_ingest_dead_letters_total\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (labels.sink === sink) out[labels.reason!] = Number(m[2]);
  }
  return out;
}

const ROUTES = `routes:
  - name: debug
    topic: debug/#
    drop: true
unmatched: dead_letter
`;

describe('a fresh node\'s scrape', () => {
  const dirs: string[] = [];
  const nodes: NodeProcess[] = [];
  afterAll(async () => {
    for (const n of nodes) await n.kill();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('file sink without routes: corrupt only; with a routes file: the routes\' reasons too', async () => {
    const plain = await startNode({ MQTT_BROKER_MODE: 'embedded' });
    nodes.push(plain);
    await plain.waitReady();
    const text = await plain.metrics();
    expect(deadLetterSeries(text, 'file')).toEqual({ corrupt: 0 });
    expect(deadLetterSeries(text, 'pubsub')).toEqual({});

    const dir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-dl-routes-'));
    dirs.push(dir);
    writeFileSync(path.join(dir, 'routes.yaml'), ROUTES);
    const routed = await startNode({ MQTT_BROKER_MODE: 'embedded', ROUTES_FILE: path.join(dir, 'routes.yaml') });
    nodes.push(routed);
    await routed.waitReady();
    expect(deadLetterSeries(await routed.metrics(), 'file')).toEqual({ no_route: 0, field_invalid: 0, decode_failed: 0, corrupt: 0 });
  });

  it('mqtt_ingest_ready follows readiness in scrapes alone, with no call to /readyz: 1 when ready, 0 while the spool is full', async () => {
    const ready = await startNode({ MQTT_BROKER_MODE: 'embedded' });
    // A floor larger than any disk: the spool is full from the start, and readiness 503 (docs/operations.md, "A full disk").
    const full = await startNode({ MQTT_BROKER_MODE: 'embedded', SPOOL_MIN_FREE_BYTES: '1000000GiB' });
    nodes.push(ready, full);
    await waitFor(async () => (await ready.metric('mqtt_ingest_ready')) === 1, 30_000, 'mqtt_ingest_ready 1 in a scrape');
    await waitFor(async () => (await full.metric('mqtt_ingest_spool_full')) === 1, 30_000, 'the other spool full');
    expect(await full.metric('mqtt_ingest_ready')).toBe(0);
    expect((await full.readiness()).status).toBe(503);
  });
});

const run = serviceAvailable('prometheus', hasPrometheus(), 'apt-get install prometheus');

describe.runIf(run)('the first dead letter after a start fires MqttIngestDeadLetters, under a real Prometheus', () => {
  let node: NodeProcess;
  let prom: TestPrometheus;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-dl-alert-'));
    writeFileSync(path.join(dir, 'routes.yaml'), ROUTES);
    node = await startNode({ MQTT_BROKER_MODE: 'embedded', ROUTES_FILE: path.join(dir, 'routes.yaml') });
    await node.waitReady();
    prom = await startPrometheus(`127.0.0.1:${node.httpPort}`, path.join(ROOT, 'deploy', 'monitoring', 'alerts.yml'));
  });
  afterAll(async () => {
    await prom?.stop();
    await node?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('one message matching no route (reason no_route) fires it, for the file sink', async () => {
    const query = async (q: string) => {
      const res = await fetch(`${prom.url}/api/v1/query?query=${encodeURIComponent(q)}`);
      return ((await res.json()) as { data: { result: { value: [number, string] }[] } }).data.result;
    };
    // Prometheus holds the series at 0 before the dead letter.
    await waitFor(async () => (await query('mqtt_ingest_dead_letters_total{sink="file",reason="no_route"} == 0')).length === 1, 20_000, 'the 0 scraped');
    expect(await prom.alerts()).not.toContainEqual(expect.objectContaining({ labels: expect.objectContaining({ alertname: 'MqttIngestDeadLetters' }) }));

    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { protocolVersion: 4 });
    try {
      await client.publishAsync('plant/unrouted', 'x', { qos: 1 });
    } finally {
      await client.endAsync();
    }
    await waitFor(async () => (await node.metric('mqtt_ingest_dead_letters_total', { sink: 'file', reason: 'no_route' })) === 1, 20_000, 'one dead letter');
    const firing = await waitFor(
      async () => (await prom.alerts()).find((a) => a.labels.alertname === 'MqttIngestDeadLetters' && a.state === 'firing'),
      30_000,
      'MqttIngestDeadLetters firing',
    );
    expect(firing.labels).toMatchObject({ sink: 'file', reason: 'no_route', severity: 'ticket' });
    expect(firing.annotations.runbook_url).toBe('docs/runbook.md#mqttingestdeadletters');
    // Exactly one dead letter: the alert fired on the series' step from 0 to 1.
    expect(await node.metric('mqtt_ingest_dead_letters_total', { sink: 'file', reason: 'no_route' })).toBe(1);
  });
});
