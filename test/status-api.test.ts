/**
 * GET /api/status and GET /api/sources against their documented shapes: one schema per answer, checked against
 * the JSON examples in docs/status-page.md and docs/operations.md and against a real node's answers (embedded
 * broker, file sink, two sensors of which one goes quiet). A field the node adds without documenting it, or a
 * documented field it stops sending, fails here.
 */
import fs from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ROOT, startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';

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
        spool: z.object({ messages: z.number().int().nonnegative(), oldestAgeSeconds: z.number().nonnegative(), full: z.boolean() }).passthrough(),
        sinks: z.record(z.string(), sink),
      })
      .passthrough(),
    history: z
      .object({
        brokerClients: z.number().int().nonnegative().nullable(),
        rates: z.object({ in: rates, sinks: z.record(z.string(), rates) }).strict(),
        spool: z.array(z.object({ at: iso, messages: z.number().int().nonnegative(), oldestAgeSeconds: z.number().nonnegative() }).strict()),
        deadLetters: z.record(z.string(), z.record(z.string(), z.number().int().positive())),
      })
      .strict(),
    config: z
      .object({
        mode: z.string(),
        appEnv: z.string(),
        sinks: z.record(z.string(), z.string()),
        routes: z.array(z.object({ name: z.string(), topic: z.string() }).strict()).nullable(),
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
    expect(example.components.sinks.pubsub?.problemSince).toBeDefined();
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
