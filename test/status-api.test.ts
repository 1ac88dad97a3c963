/**
 * GET /api/status and GET /api/sources against their documented shapes: one schema per answer, checked against
 * the JSON examples in docs/status-page.md and docs/operations.md and against a real node's answers (embedded
 * broker, file sink, two sensors of which one goes quiet). A field the node adds without documenting it, or a
 * documented field it stops sending, fails here.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import { baseEnv, ROOT, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';
import { createTopicAndSubscription, hasPubSubEmulator, pullAll, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { startBigQueryServer, type BigQueryServer } from './helpers/bigquery-server.js';
import { serviceAvailable } from './helpers/skip.js';
import { DeadLetterCounts } from '../src/http/dead-letter-counts.js';
import { SINK_RUNBOOK_HEADINGS, runbookSection, sinkAction } from '../src/http/sink-actions.js';
import { ERRORS } from '../src/core/error-catalogue.js';

const iso = z.string().regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'an ISO 8601 UTC time');
const rates = z.object({ m1: z.number().nullable(), m5: z.number().nullable(), m15: z.number().nullable() }).strict();
const sink = z
  .object({
    state: z.enum(['ok', 'degraded', 'failing']),
    detail: z.string().optional(),
    lastError: z.string().optional(),
    lastErrorAt: iso.optional(),
    problemSince: iso.optional(),
    lastDeliveryAt: iso.optional(),
    inFlight: z.number().int().nonnegative(),
    retrying: z.number().int().nonnegative(),
    consecutiveFailures: z.number().int().nonnegative(),
    unrecorded: z.number().int().positive().optional(),
    reason: z.string().optional(),
    action: z.string().optional(),
    runbook: z.object({ heading: z.string(), url: z.string().regex(/^docs\/runbook\.md#[a-z0-9_-]+$/) }).strict().optional(),
  })
  .strict()
  // A sink with a problem says why and what to do; a healthy one neither.
  .refine((s) => (s.state === 'ok') === (s.action === undefined && s.runbook === undefined), 'action and runbook exactly when the sink is not ok');
const counts = z.record(z.string(), z.record(z.string(), z.number().int().positive()));
const route = z
  .object({
    name: z.string(),
    topic: z.string(),
    decode: z.enum(['raw', 'json', 'sparkplug']),
    pubsub: z.string().regex(/^projects\/[^/]+\/topics\/[^/]+$/).nullable(),
    bigquery: z.string().regex(/^[^.]+\.[^.]+\.[^.]+$/).nullable(),
    file: z.boolean(),
    drop: z.boolean(),
  })
  .strict();
const statusSchema = z
  .object({
    ready: z.boolean(),
    generatedAt: iso,
    version: z.string(),
    startedAt: iso,
    uptimeSeconds: z.number().int().nonnegative(),
    // The components are /readyz's (docs/operations.md); their fields vary with the mode, the sinks' do not.
    components: z
      .object({
        version: z.string(),
        mode: z.enum(['embedded', 'mosquitto', 'external']),
        broker: z.object({ state: z.string() }).passthrough(),
        source: z.object({ state: z.string() }).passthrough(),
        security: z.object({ insecure: z.array(z.string()) }).strict().optional(),
        leave: z.object({ state: z.enum(['leaving', 'left', 'deadline_passed']), startedAt: iso, deadlineAt: iso, spoolMessages: z.number().int().nonnegative(), detail: z.string() }).strict().optional(),
        spool: z.object({ messages: z.number().int().nonnegative(), oldestAgeSeconds: z.number().nonnegative(), full: z.boolean() }).passthrough(),
        sinks: z.record(z.string(), sink),
      })
      .passthrough(),
    history: z
      .object({
        brokerClients: z.number().int().nonnegative().nullable(),
        rates: z.object({ in: rates, sinks: z.record(z.string(), rates) }).strict(),
        spool: z.array(z.object({ at: iso, messages: z.number().int().nonnegative(), oldestAgeSeconds: z.number().nonnegative() }).strict()),
        deadLetters: counts,
        deadLettersHeld: counts,
        deadLettersCountedAt: iso.nullable(),
      })
      .strict(),
    config: z
      .object({
        mode: z.string(),
        appEnv: z.string(),
        sinks: z.record(z.string(), z.string()),
        routes: z.array(route).nullable(),
        routesUnmatched: z.enum(['raw', 'dead_letter', 'drop']).nullable(),
      })
      .strict(),
    sources: z
      .object({
        silentAfterSeconds: z.number().positive(),
        count: z.number().int().nonnegative(),
        silent: z.array(z.object({ topic: z.string(), lastSeenAt: iso, quietSeconds: z.number().nonnegative() }).strict()).max(100),
      })
      .strict()
      .optional(),
  })
  .strict();
const sourcesSchema = z
  .object({
    silentAfterSeconds: z.number().positive(),
    tracked: z.number().int().nonnegative(),
    untracked: z.number().int().nonnegative(),
    silent: z.number().int().nonnegative(),
    sources: z.array(
      z
        .object({
          topic: z.string(),
          lastSeenAt: iso,
          quietSeconds: z.number().nonnegative(),
          ratePerMinute: z.number().nonnegative(),
          messages: z.number().int().positive(),
          silent: z.boolean(),
        })
        .strict(),
    ),
  })
  .strict();

/** The first ```json block after `heading` in a doc. */
function documentedExample(doc: string, heading: RegExp): unknown {
  const text = fs.readFileSync(path.join(ROOT, 'docs', doc), 'utf8');
  const at = text.search(heading);
  expect(at, `${heading} in docs/${doc}`).toBeGreaterThanOrEqual(0);
  const block = /```json\n([\s\S]*?)```/.exec(text.slice(at));
  return JSON.parse(block![1]!);
}

describe('the documented examples', () => {
  it('docs/status-page.md shows an /api/status answer of the schema', () => {
    const example = statusSchema.parse(documentedExample('status-page.md', /^## `GET \/api\/status`/m));
    // The example shows the case the page is for: a sink that delivers nothing since its problem began.
    const pubsub = example.components.sinks.pubsub!;
    expect(pubsub.problemSince).toBeDefined();
    // Its action is the one the node computes for that reason, not words written for the docs alone.
    expect({ action: pubsub.action, runbook: pubsub.runbook }).toEqual(sinkAction('pubsub', pubsub));
  });
  it('docs/operations.md shows an /api/sources answer of the schema', () => {
    sourcesSchema.parse(documentedExample('operations.md', /`GET \/api\/sources` on the HTTP port/));
  });
});

describe('a real node answers in the documented shapes', () => {
  let node: NodeProcess;
  beforeAll(async () => {
    node = await startNode({ MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on', SILENT_AFTER_SECONDS: '2' });
    await node.waitReady();
  });
  afterAll(async () => {
    await node?.kill();
  });
  const get = async (p: string) => (await (await fetch(`http://127.0.0.1:${node.httpPort}${p}`)).json()) as unknown;

  it('/api/status and /api/sources, before and after a sensor goes quiet', async () => {
    const fresh = statusSchema.parse(await get('/api/status'));
    expect(fresh).toMatchObject({ ready: true, components: { mode: 'embedded', sinks: { file: { state: 'ok' } } }, config: { sinks: { file: expect.any(String) }, routes: null } });
    expect(Math.abs(Date.parse(fresh.generatedAt) - Date.now())).toBeLessThan(5_000);
    expect(sourcesSchema.parse(await get('/api/sources'))).toMatchObject({ tracked: 0, silent: 0, sources: [] });

    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`);
    await pub.publishAsync('plant/pit3/pressure', '{"bar":4.1}', { qos: 1 });
    const until = Date.now() + 3_500;
    // pit 3 publishes once and goes quiet; pit 4 keeps publishing.
    while (Date.now() < until) {
      await pub.publishAsync('plant/pit4/pressure', '{"bar":3.9}', { qos: 1 });
      await new Promise((r) => setTimeout(r, 250));
    }
    await pub.endAsync();

    const sources = sourcesSchema.parse(await get('/api/sources'));
    expect(sources).toMatchObject({ tracked: 2, silent: 1 });
    expect(sources.sources.map((s) => [s.topic, s.silent])).toEqual([
      ['plant/pit3/pressure', true],
      ['plant/pit4/pressure', false],
    ]);
    const onlySilent = sourcesSchema.parse(await get('/api/sources?silent=true'));
    expect(onlySilent.sources.map((s) => s.topic)).toEqual(['plant/pit3/pressure']);

    const status = await waitFor(async () => {
      const s = statusSchema.parse(await get('/api/status'));
      return s.components.sinks.file?.lastDeliveryAt ? s : undefined;
    }, 10_000, 'a file sink delivery in /api/status');
    expect(status.sources).toMatchObject({ count: 1, silent: [{ topic: 'plant/pit3/pressure' }] });
  });
});

describe('what a sink banner says to do', () => {
  it('names runbook sections that exist, alerts by their own anchors', () => {
    const headings = [...fs.readFileSync(path.join(ROOT, 'docs', 'runbook.md'), 'utf8').matchAll(/^#{2,3} (.+)$/gm)].map((m) => m[1]!.trim());
    const alerts = (parse(fs.readFileSync(path.join(ROOT, 'deploy', 'monitoring', 'alerts.yml'), 'utf8')) as { groups: { rules: { alert: string; annotations: { runbook_url: string } }[] }[] }).groups.flatMap((g) => g.rules);
    for (const heading of SINK_RUNBOOK_HEADINGS) {
      expect(headings, `docs/runbook.md has a heading "${heading}"`).toContain(heading);
      const alert = alerts.find((a) => a.alert === heading);
      if (alert) expect(runbookSection(heading).url).toBe(alert.annotations.runbook_url);
    }
    expect(runbookSection('Pub/Sub permission denied').url).toBe('docs/runbook.md#pubsub-permission-denied');
  });

  it('has its own action for every Pub/Sub and BigQuery reason of the runbook table "Why a sink fails"', () => {
    const runbook = fs.readFileSync(path.join(ROOT, 'docs', 'runbook.md'), 'utf8');
    const table = runbook.slice(runbook.indexOf('### Why a sink fails'), runbook.indexOf('### Pub/Sub permission denied'));
    const rows = [...table.matchAll(/^\| `(pubsub|bigquery)` \| (.+?) \|/gm)].flatMap((m) => [...m[2]!.matchAll(/`([a-z_]+)`/g)].map((r) => [m[1]!, r[1]!] as const));
    expect(rows.length).toBeGreaterThan(15);
    const generic = [ERRORS.SINK_FAILING.action, ERRORS.SINK_DEGRADED.action];
    for (const [sink, reason] of rows) {
      const a = sinkAction(sink, { state: 'degraded', reason });
      expect(generic, `${sink} ${reason} has an action of its own`).not.toContain(a?.action);
    }
    // Unknown reasons fall back to the catalogue's action for the line the node logs, and a healthy sink has none.
    expect(sinkAction('pubsub', { state: 'failing', reason: 'something_new' })?.action).toBe(ERRORS.SINK_FAILING.action);
    expect(sinkAction('bigquery', { state: 'degraded', reason: 'error', detail: 'REQUEST_TIMEOUT: insertAll got no answer' })?.action).toBe(ERRORS.REQUEST_TIMEOUT.action);
    expect(sinkAction('file', { state: 'ok' })).toBeUndefined();
  });
});

describe('the dead-letter count', () => {
  it('runs at most once per 10 s however often pages ask, and keeps the last count when one fails', () => {
    let now = Date.parse('2026-12-02T08:00:00.000Z');
    let runs = 0;
    let fail = false;
    const counts = new DeadLetterCounts({
      now: () => now,
      count: () => {
        runs += 1;
        if (fail) throw new Error('database is locked');
        return [{ sink: 'file', reason: 'no_route', count: runs }];
      },
    });
    // Five browsers refreshing every 5 s for a minute: 60 requests.
    for (let t = 0; t < 60_000; t += 1_000) {
      now += 1_000;
      counts.held();
    }
    expect(runs).toBe(6);
    expect(counts.held()).toEqual({ bySink: { file: { no_route: 6 } }, countedAt: '2026-12-02T08:00:51.000Z' });
    fail = true;
    now += 10_000;
    expect(counts.held()).toEqual({ bySink: { file: { no_route: 6 } }, countedAt: '2026-12-02T08:00:51.000Z' });
    expect(runs).toBe(7);
  });
});

function routesFile(text: string): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'status-routes-')), 'routes.yaml');
  fs.writeFileSync(file, text);
  return file;
}

async function publish(port: number, messages: Array<[string, string]>): Promise<void> {
  const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
  for (const [topic, payload] of messages) await pub.publishAsync(topic, payload, { qos: 1 });
  await pub.endAsync();
}

describe('dead letters made before a restart', () => {
  const nodes: NodeProcess[] = [];
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.kill()));
  });

  it('are still shown after it, as the store holds them; a dlq purge shows within one count', async () => {
    const env = {
      MQTT_BROKER_MODE: 'embedded',
      FILE_SINK: 'on',
      ROUTES_FILE: routesFile('routes:\n  - name: plant\n    topic: plant/#\nunmatched: dead_letter\n'),
    };
    const first = await startNode(env);
    nodes.push(first);
    await first.waitReady();
    const get = async (node: NodeProcess) => statusSchema.parse(await (await fetch(`http://127.0.0.1:${node.httpPort}/api/status`)).json());
    await publish(first.mqttPort, [['other/a', '1'], ['other/b', '2'], ['other/c', '3'], ['plant/ok', '4']]);
    const before = await waitFor(async () => {
      const s = await get(first);
      return s.history.deadLettersHeld.file?.no_route === 3 ? s : undefined;
    }, 20_000, 'three dead letters held');
    expect(before.history.deadLetters).toEqual({ file: { no_route: 3 } });
    expect(before.history.deadLettersHeld).toEqual({ file: { no_route: 3 } });
    // Asked again at once: the same count, not a new one.
    expect((await get(first)).history.deadLettersCountedAt).toBe(before.history.deadLettersCountedAt);
    expect(await first.stop()).toBe(0);

    const second = await startNode(env, { dataDir: first.dataDir });
    nodes.push(second);
    await second.waitReady();
    const after = await get(second);
    // The counter starts again at the start; the store still holds them.
    expect(after.history.deadLetters).toEqual({});
    expect(after.history.deadLettersHeld).toEqual({ file: { no_route: 3 } });
    expect(after.config).toMatchObject({ routes: [{ name: 'plant', topic: 'plant/#', decode: 'raw', pubsub: null, bigquery: null, file: true, drop: false }], routesUnmatched: 'dead_letter' });

    // Another process deletes one: the page's count follows the store within one count interval.
    const cli = baseEnv({ DATA_DIR: second.dataDir, ...env });
    const listed = await runCli(['dlq', 'list', '--json'], cli);
    expect(listed.code, listed.stderr).toBe(0);
    const id = (JSON.parse(listed.stdout.split('\n')[0]!) as { id: number }).id;
    const purged = await runCli(['dlq', 'purge', '--id', String(id)], cli);
    expect(purged.code, purged.stderr).toBe(0);
    await waitFor(async () => (await get(second)).history.deadLettersHeld.file?.no_route === 2, 20_000, 'two dead letters held after the purge');
  });
});

const haveEmulator = serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component');

describe.runIf(haveEmulator)('routes and their destinations in the configuration summary', () => {
  let emu: PubSubEmulator;
  let bq: BigQueryServer;
  let node: NodeProcess;
  const ROUTES = `
routes:
  - name: pressure
    topic: plant/{site}/pressure/{sensor}
    decode: json
    fields:
      bar: { from: payload.bar, type: float }
    pubsub:
      topic: pressure-readings
    bigquery:
      table: pressure
  - name: vibration
    topic: plant/{site}/vibration/{machine}
    pubsub:
      topic: vibration-readings
    bigquery: false
  - name: archive
    topic: archive/#
    pubsub: false
    bigquery:
      table: archive
  - name: debug
    topic: debug/#
    drop: true
unmatched: dead_letter
`;
  beforeAll(async () => {
    emu = await startPubSubEmulator();
    bq = await startBigQueryServer({ projectId: emu.projectId });
    // vibration-readings is not created: that route's messages make the Pub/Sub sink fail with topic_not_found.
    await createTopicAndSubscription(emu.host, emu.projectId, 'pressure-readings', 'pressure-check');
    node = await startNode({
      MQTT_BROKER_MODE: 'embedded',
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: 'plant-raw',
      PUBSUB_EMULATOR_HOST: emu.host,
      BIGQUERY_DATASET: 'plant',
      BIGQUERY_TABLE: 'raw',
      BIGQUERY_API_ENDPOINT: bq.url,
      BIGQUERY_AUTO_CREATE: 'true',
      ROUTES_FILE: routesFile(ROUTES),
      RETRY_MAX_DELAY_MS: '1000',
    });
    await node.waitReady();
  });
  afterAll(async () => {
    await node?.kill();
    await Promise.all([emu?.stop(), bq?.stop()]);
  });
  const get = async () => statusSchema.parse(await (await fetch(`http://127.0.0.1:${node.httpPort}/api/status`)).json());

  it('lists each route with its Pub/Sub topic, BigQuery table or drop, and what matches none; a missing route topic says what to do', async () => {
    const p = emu.projectId;
    const status = await get();
    expect(status.config.routes).toEqual([
      { name: 'pressure', topic: 'plant/{site}/pressure/{sensor}', decode: 'json', pubsub: `projects/${p}/topics/pressure-readings`, bigquery: `${p}.plant.pressure`, file: false, drop: false },
      { name: 'vibration', topic: 'plant/{site}/vibration/{machine}', decode: 'raw', pubsub: `projects/${p}/topics/vibration-readings`, bigquery: null, file: false, drop: false },
      { name: 'archive', topic: 'archive/#', decode: 'raw', pubsub: null, bigquery: `${p}.plant.archive`, file: false, drop: false },
      { name: 'debug', topic: 'debug/#', decode: 'raw', pubsub: null, bigquery: null, file: false, drop: true },
    ]);
    expect(status.config.routesUnmatched).toBe('dead_letter');
    expect(status.config.sinks).toEqual({ pubsub: `projects/${p}/topics/plant-raw`, bigquery: `${p}.plant.raw` });

    // The destinations are where messages go: a pressure reading reaches its topic.
    await publish(node.mqttPort, [['plant/north/pressure/p1', '{"bar": 2.5}']]);
    expect(await pullAll(emu.host, emu.projectId, 'pressure-check', 1, 30_000)).toHaveLength(1);

    // A vibration reading goes to a topic that does not exist: the sink's entry says what to do about it.
    await publish(node.mqttPort, [['plant/north/vibration/m1', 'x']]);
    const failing = await waitFor(async () => {
      const s = await get();
      return s.components.sinks.pubsub?.state === 'failing' ? s.components.sinks.pubsub : undefined;
    }, 30_000, 'the Pub/Sub sink failing');
    expect(failing.reason).toBe('topic_not_found');
    expect(failing.detail).toContain(`projects/${p}/topics/vibration-readings`);
    expect(failing.action).toContain('mqtt-ingest provision');
    expect(failing.runbook).toEqual({ heading: 'Why a sink fails', url: 'docs/runbook.md#why-a-sink-fails' });
    // /readyz carries the reason, not the page's words.
    const ready = (await node.readiness()).body as { sinks: Record<string, Record<string, unknown>> };
    expect(ready.sinks.pubsub).toMatchObject({ state: 'failing', reason: 'topic_not_found' });
    expect(ready.sinks.pubsub!.action).toBeUndefined();
  });
});
