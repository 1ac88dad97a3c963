import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import path from 'node:path';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { readFileSink } from './helpers/file-output.js';
import { waitFor } from './helpers/ports.js';

/** Publishes `count` QoS 1 messages and resolves when the broker has acknowledged every one. */
async function publishAll(url: string, count: number, topic = (i: number) => `plant/line1/pressure/${i % 10}`): Promise<void> {
  const client = await mqtt.connectAsync(url, { clientId: `pub-${process.pid}-${Date.now()}`, protocolVersion: 4 });
  const sends: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    sends.push(client.publishAsync(topic(i), JSON.stringify({ seq: i, bar: 1.2 + i / 1000 }), { qos: 1 }));
  }
  await Promise.all(sends);
  await client.endAsync();
}

describe('embedded broker mode', () => {
  let node: NodeProcess;
  beforeAll(async () => {
    node = await startNode({ MQTT_BROKER_MODE: 'embedded' });
    await node.waitReady();
  });
  afterAll(async () => {
    await node?.kill();
  });

  it('stores every one of 2,000 QoS 1 messages in the file sink', async () => {
    await publishAll(`mqtt://127.0.0.1:${node.mqttPort}`, 2000);
    const out = path.join(node.dataDir, 'out');
    const records = await waitFor(() => {
      const r = readFileSink(out);
      return r.length >= 2000 ? r : undefined;
    }, 20_000, '2,000 file records');
    const seqs = new Set(records.map((r) => (JSON.parse(r.payload) as { seq: number }).seq));
    expect(seqs.size).toBe(2000);
    expect(new Set(records.map((r) => r.message_id)).size).toBe(records.length);
    expect(records[0]).toMatchObject({ qos: 1, retain: false, payload_encoding: 'utf8' });
    expect(records[0].received_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(await node.metric('mqtt_ingest_messages_received_total')).toBe(2000);
    expect(await node.metric('mqtt_ingest_messages_delivered_total', { sink: 'file' })).toBe(2000);
  });

  it('answers readiness with every component, liveness, metrics and the status page', async () => {
    const r = await node.readiness();
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ ready: true, mode: 'embedded', broker: { state: 'up' }, sinks: { file: { state: 'ok' } } });
    const base = `http://127.0.0.1:${node.httpPort}`;
    for (const p of ['/liveness_check', '/healthz', '/readiness_check']) expect((await fetch(base + p)).status).toBe(200);
    const live = (await (await fetch(base + '/healthz')).json()) as Record<string, unknown>;
    expect(live).toMatchObject({ live: true, loopStalled: false, broker: { state: 'up' }, sinks: { file: { state: 'ok' } } });
    const metrics = await node.metrics();
    for (const name of ['mqtt_ingest_spool_messages', 'mqtt_ingest_spool_oldest_age_seconds', 'mqtt_ingest_dead_letters_total', 'mqtt_ingest_delivery_failures_total']) {
      expect(metrics).toContain(name);
    }
    const page = await (await fetch(base + '/')).text();
    expect(page).toContain('<div id="banners">');
    expect(page).not.toMatch(/<script[^>]+src=|<link[^>]+href="http/);
    const status = (await (await fetch(base + '/api/status')).json()) as Record<string, any>;
    expect(status).toMatchObject({ ready: true, components: { mode: 'embedded', broker: { state: 'up' } }, config: { mode: 'embedded', sinks: { file: expect.any(String) }, routes: null } });
    expect(status.history.rates.in).toHaveProperty('m1');
    expect(Array.isArray(status.history.spool)).toBe(true);
    expect(typeof status.uptimeSeconds).toBe('number');
  });

  it('logs one JSON object per line with Cloud Logging severity', () => {
    const objs = node.logObjects();
    expect(objs.length).toBeGreaterThan(0);
    expect(objs.length).toBe(node.logs.filter((l) => l.trim()).length);
    expect(objs.find((o) => o.code === 'NODE_STARTED')).toMatchObject({ severity: 'INFO' });
  });
});

describe('SIGTERM', () => {
  it('exits 0 within 10 s and loses nothing that was acknowledged', async () => {
    const node = await startNode({ MQTT_BROKER_MODE: 'embedded' });
    try {
      await node.waitReady();
      await publishAll(`mqtt://127.0.0.1:${node.mqttPort}`, 3000);
      const started = Date.now();
      expect(await node.stop()).toBe(0);
      expect(Date.now() - started).toBeLessThan(10_000);
      // Whatever the file sink had not written before the stop is still in the spool: restart and drain.
      const again = await startNode({ MQTT_BROKER_MODE: 'embedded' }, { dataDir: node.dataDir });
      try {
        await again.waitReady();
        const records = await waitFor(() => {
          const r = readFileSink(path.join(node.dataDir, 'out'));
          return new Set(r.map((x) => x.payload)).size >= 3000 ? r : undefined;
        }, 20_000, 'all 3,000 messages in the file sink');
        expect(new Set(records.map((x) => x.payload)).size).toBe(3000);
      } finally {
        await again.kill();
      }
    } finally {
      await node.kill();
    }
  });
});
