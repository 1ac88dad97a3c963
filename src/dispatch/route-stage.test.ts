import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool } from '../spool/spool.js';
import { Metrics } from '../core/metrics.js';
import { createLogger } from '../core/logger.js';
import { delivered, retryable, type DeliveryOutcome } from '../core/outcome.js';
import type { SinkName } from '../core/message.js';
import { parseRoutes, describeProblem } from '../routes/routes-file.js';
import { Router } from '../routes/router.js';
import type { DeliveryMessage, Sink, SinkDescription } from '../sinks/sink.js';
import { Dispatcher } from './dispatcher.js';

/** Records what it is given; answers as the test says. */
class RecordingSink implements Sink {
  readonly maxBatchMessages = 50;
  readonly maxBatchBytes = 1e6;
  readonly maxInFlight = 1;
  describe: SinkDescription = {};
  written: DeliveryMessage[] = [];
  writes = 0;
  constructor(
    readonly name: SinkName,
    public answer: (m: DeliveryMessage) => DeliveryOutcome = () => delivered,
  ) {}
  async start() {}
  async write(batch: DeliveryMessage[]) {
    this.writes += 1;
    this.written.push(...batch);
    return batch.map((m) => this.answer(m));
  }
  async close() {}
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const CTX = { pubsubTopic: 'projects/p/topics/raw', gcpProjectId: 'p', bigqueryDataset: 'ds', fileSink: false };

const ROUTES = `
routes:
  - name: pressure
    topic: plant/{site}/pressure/{sensor}
    decode: json
    fields:
      bar: { from: payload.bar, type: float }
    pubsub:
      topic: pressure-readings
      attributes: [site, sensor]
      ordering_key: "{site}/{sensor}"
    bigquery:
      table: pressure
  - name: flow
    topic: plant/{site}/flow
    bigquery: false
  - name: debug
    topic: debug/#
    drop: true
unmatched: UNMATCHED
`;

function router(unmatched: string): Router {
  const r = parseRoutes(ROUTES.replace('UNMATCHED', unmatched), 'routes.yaml', CTX);
  if (!r.table) throw new Error(r.problems.map(describeProblem).join('\n'));
  return new Router(r.table);
}

function openSpool(): Spool {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'route-stage-'));
  dirs.push(dir);
  return Spool.open({ dir, maxBytes: 1e9, sinks: ['pubsub', 'bigquery'], sync: 'normal' });
}

function put(spool: Spool, items: [string, string][]): void {
  spool.append(items.map(([topic, payload]) => ({ topic, payload: Buffer.from(payload), qos: 1 as const, retain: false, receivedAt: Date.now() })));
}

async function until(done: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function value(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, want]) => x.labels[k] === want));
  return v?.value ?? 0;
}

const OPTS = { retryBaseMs: 5, retryCapMs: 20, idlePollMs: 5 };

describe('routes at delivery', () => {
  it('each sink gets only what its routes send it, with their targets; the rest is done at once and counted once', async () => {
    const spool = openSpool();
    const pubsub = new RecordingSink('pubsub');
    const bigquery = new RecordingSink('bigquery');
    const metrics = new Metrics({ defaultMetrics: false });
    put(spool, [
      ['plant/north/pressure/p1', '{"bar": 2.5}'],
      ['plant/north/flow', 'raw bytes'],
      ['debug/x', 'noise'],
      ['plant/north/pressure/p2', '{"bar": "abc"}'],
      ['other/topic', 'unrouted'],
    ]);
    const d = new Dispatcher([pubsub, bigquery], spool, createLogger('silent'), metrics, OPTS, router('raw'));
    d.start();
    await until(() => spool.stats().messages === 0);
    await d.stop(1000);

    // Pub/Sub: pressure (routed) and flow (routed, Pub/Sub only) and the unmatched one (raw, no targets).
    expect(pubsub.written.map((m) => m.topic)).toEqual(['plant/north/pressure/p1', 'plant/north/flow', 'other/topic']);
    const p1 = pubsub.written[0]!.routed!;
    expect(p1.route).toBe('pressure');
    expect(p1.pubsub).toMatchObject({ topic: 'projects/p/topics/pressure-readings', attributes: { site: 'north', sensor: 'p1' }, orderingKey: 'north/p1' });
    expect(p1.bigquery?.rows[0]?.row).toMatchObject({ site: 'north', sensor: 'p1', bar: 2.5 });
    expect(pubsub.written[1]!.routed?.pubsub?.topic).toBe('projects/p/topics/raw');
    expect(pubsub.written[2]!.routed).toBeUndefined();
    // BigQuery: flow skips it; pressure and the unmatched one are written.
    expect(bigquery.written.map((m) => m.topic)).toEqual(['plant/north/pressure/p1', 'other/topic']);
    expect(bigquery.written[0]!.routed?.bigquery?.table).toBe('pressure');

    // The bad value is dead-lettered for both sinks of its route, naming the route and the field.
    expect(await value(metrics, 'mqtt_ingest_dead_letters_total', { sink: 'pubsub', reason: 'field_invalid' })).toBe(1);
    expect(await value(metrics, 'mqtt_ingest_dead_letters_total', { sink: 'bigquery', reason: 'field_invalid' })).toBe(1);
    // Counted once per message, whatever the number of sinks.
    expect(await value(metrics, 'mqtt_ingest_route_messages_total', { route: 'pressure', outcome: 'delivered' })).toBe(1);
    expect(await value(metrics, 'mqtt_ingest_route_messages_total', { route: 'pressure', outcome: 'dead_lettered' })).toBe(1);
    expect(await value(metrics, 'mqtt_ingest_route_messages_total', { route: 'flow', outcome: 'delivered' })).toBe(1);
    expect(await value(metrics, 'mqtt_ingest_route_messages_total', { route: 'debug', outcome: 'dropped' })).toBe(1);
    expect(await value(metrics, 'mqtt_ingest_messages_dropped_total', { route: 'debug' })).toBe(1);
    expect(await value(metrics, 'mqtt_ingest_route_messages_total', { route: 'unmatched', outcome: 'delivered' })).toBe(1);
    // Delivered counts only what a sink was given and took.
    expect(await value(metrics, 'mqtt_ingest_messages_delivered_total', { sink: 'pubsub' })).toBe(3);
    expect(await value(metrics, 'mqtt_ingest_messages_delivered_total', { sink: 'bigquery' })).toBe(2);
    spool.close();
  });

  it('unmatched: dead_letter puts what matches no route in the dead-letter store (no_route); unmatched: drop drops it', async () => {
    for (const unmatched of ['dead_letter', 'drop'] as const) {
      const spool = openSpool();
      const pubsub = new RecordingSink('pubsub');
      const bigquery = new RecordingSink('bigquery');
      const metrics = new Metrics({ defaultMetrics: false });
      put(spool, [['nobody/listens', 'x']]);
      const d = new Dispatcher([pubsub, bigquery], spool, createLogger('silent'), metrics, OPTS, router(unmatched));
      d.start();
      await until(() => spool.stats().pending.pubsub === 0 && spool.stats().pending.bigquery === 0);
      await d.stop(1000);
      expect(pubsub.writes + bigquery.writes).toBe(0);
      if (unmatched === 'dead_letter') {
        expect(spool.stats().deadLetters).toBe(2);
        expect(await value(metrics, 'mqtt_ingest_dead_letters_total', { sink: 'pubsub', reason: 'no_route' })).toBe(1);
        expect(await value(metrics, 'mqtt_ingest_route_messages_total', { route: 'unmatched', outcome: 'dead_lettered' })).toBe(1);
      } else {
        expect(spool.stats().deadLetters).toBe(0);
        expect(spool.stats().messages).toBe(0);
        expect(await value(metrics, 'mqtt_ingest_messages_dropped_total', { route: 'unmatched' })).toBe(1);
      }
      spool.close();
    }
  });

  it('a failing destination backs off even when routing finished part of each batch, and nothing is counted twice', async () => {
    const spool = openSpool();
    let down = true;
    const pubsub = new RecordingSink('pubsub', () => (down ? retryable('unavailable', 'down', 'degraded') : delivered));
    const bigquery = new RecordingSink('bigquery');
    const metrics = new Metrics({ defaultMetrics: false });
    // Every batch but the last also holds messages that routing finishes (dropped ones).
    const drops = Array.from({ length: 2000 }, (_, i): [string, string] => [`debug/${i}`, 'x']);
    put(spool, [['plant/a/pressure/s', '{"bar":1}'], ...drops]);
    const d = new Dispatcher([pubsub, bigquery], spool, createLogger('silent'), metrics, { ...OPTS, retryBaseMs: 50, retryCapMs: 50 }, router('raw'));
    d.start();
    await new Promise((r) => setTimeout(r, 400));
    // About one attempt per backoff (50 ms), not one per batch of the backlog (40 batches).
    expect(pubsub.writes).toBeGreaterThan(1);
    expect(pubsub.writes).toBeLessThan(15);
    // Every attempt carried the one routed message, never a dropped one.
    expect(new Set(pubsub.written.map((m) => m.topic))).toEqual(new Set(['plant/a/pressure/s']));
    down = false;
    await until(() => spool.stats().messages === 0);
    await d.stop(1000);
    expect(await value(metrics, 'mqtt_ingest_route_messages_total', { route: 'pressure', outcome: 'delivered' })).toBe(1);
    expect(await value(metrics, 'mqtt_ingest_route_messages_total', { route: 'debug', outcome: 'dropped' })).toBe(2000);
    spool.close();
  });
});
