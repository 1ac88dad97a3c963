/**
 * Routes end to end (ROUTES_FILE, docs/routing.md): MQTT 5 publishers → the node's Mosquitto → the node → the Pub/Sub
 * emulator, the local BigQuery server and the file sink, with the routes applied at delivery.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { baseEnv, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { createTopicAndSubscription, hasPubSubEmulator, pullAll, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { hasMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { freePort, waitFor } from './helpers/ports.js';
import { startBigQueryServer, type BigQueryServer } from './helpers/bigquery-server.js';
import { readFileSink } from './helpers/file-output.js';

const run =
  serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component') &&
  serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

const PLANT = `
routes:
  - name: pressure
    topic: plant/{site}/{line}/pressure/{sensor}
    decode: json
    fields:
      bar:         { from: payload.bar, type: float }
      status:      { from: payload.status, type: string, optional: true }
      measured_at: { from: payload.ts, type: timestamp }
      firmware:    { from: property.fw, type: string, optional: true }
      count:       { from: payload.count, type: int }
      ok:          { from: payload.ok, type: bool }
      extra:       { from: payload.extra, type: json, optional: true }
    pubsub:
      topic: pressure-readings
      attributes: [site, line, sensor, firmware]
      ordering_key: "{site}/{sensor}"
    bigquery:
      table: pressure
  - name: flow
    topic: plant/{site}/flow/{meter}
    decode: json
    fields:
      m3h: { from: payload.m3h, type: float }
    pubsub:
      topic: flow-readings
      data: fields
    bigquery: false
  - name: debug
    topic: debug/#
    drop: true
unmatched: raw
`;

/** The same file a release later: the pressure route reads an optional temperature too. */
const PLANT_WITH_TEMP = PLANT.replace(
  '      extra:       { from: payload.extra, type: json, optional: true }\n',
  '      extra:       { from: payload.extra, type: json, optional: true }\n      temp:        { from: payload.temp, type: float, optional: true }\n',
);

type Sent = { topic: string; payload: string; fw?: string };

async function publishV5(port: number, messages: Sent[]): Promise<void> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5_000 });
  try {
    for (const m of messages) {
      await client.publishAsync(m.topic, m.payload, { qos: 1, ...(m.fw ? { properties: { userProperties: { fw: m.fw } } } : {}) });
    }
  } finally {
    await client.endAsync();
  }
}

async function dlqJson(dataDir: string): Promise<Record<string, unknown>[]> {
  const r = await runCli(['dlq', 'list', '--json'], baseEnv({ DATA_DIR: dataDir }));
  if (r.code !== 0) throw new Error(`dlq list failed: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

function routesFile(text: string): string {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'routes-')), 'routes.yaml');
  writeFileSync(file, text);
  return file;
}

describe.runIf(run)('routes end to end', () => {
  let emu: PubSubEmulator;
  let bq: BigQueryServer;
  const nodes: NodeProcess[] = [];
  beforeAll(async () => {
    emu = await startPubSubEmulator();
    bq = await startBigQueryServer({ projectId: emu.projectId });
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.kill()));
    await Promise.all([emu?.stop(), bq?.stop()]);
  });

  const cloud = (topic: string, dataset: string) => ({
    MQTT_BROKER_MODE: 'mosquitto',
    GCP_PROJECT_ID: emu.projectId,
    PUBSUB_TOPIC: topic,
    PUBSUB_EMULATOR_HOST: emu.host,
    BIGQUERY_DATASET: dataset,
    BIGQUERY_TABLE: 'raw',
    BIGQUERY_API_ENDPOINT: bq.url,
    BIGQUERY_AUTO_CREATE: 'true',
  });

  async function start(env: Record<string, string>, dataDir?: string): Promise<NodeProcess> {
    const node = await startNode(env, dataDir ? { dataDir } : {});
    nodes.push(node);
    await node.waitReady();
    return node;
  }

  it('per-route topics, attributes, ordering keys and data; a typed table; a bad value dead-lettered alone; drops counted; unmatched raw', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'plant-raw', 'plant-raw-check');
    await createTopicAndSubscription(emu.host, emu.projectId, 'pressure-readings', 'pressure-check', { ordered: true });
    await createTopicAndSubscription(emu.host, emu.projectId, 'flow-readings', 'flow-check');
    const file = routesFile(PLANT);
    const env = { ...cloud('plant-raw', 'plant'), ROUTES_FILE: file, FILE_SINK: 'on' };
    const node = await start(env);
    expect(node.logObjects().find((l) => l.code === 'ROUTES_LOADED')).toMatchObject({ routes: ['pressure', 'flow', 'debug'], unmatched: 'raw' });

    // The typed table was made at start, exactly so.
    const table = bq.tables.get('plant.pressure')!.resource;
    expect(table.schema.fields.map((f) => [f.name, f.type, f.mode])).toEqual([
      ['message_id', 'STRING', 'REQUIRED'],
      ['topic', 'STRING', 'REQUIRED'],
      ['received_at', 'TIMESTAMP', 'REQUIRED'],
      ['site', 'STRING', 'REQUIRED'],
      ['line', 'STRING', 'REQUIRED'],
      ['sensor', 'STRING', 'REQUIRED'],
      ['bar', 'FLOAT', 'REQUIRED'],
      ['status', 'STRING', 'NULLABLE'],
      ['measured_at', 'TIMESTAMP', 'REQUIRED'],
      ['firmware', 'STRING', 'NULLABLE'],
      ['count', 'INTEGER', 'REQUIRED'],
      ['ok', 'BOOLEAN', 'REQUIRED'],
      ['extra', 'JSON', 'NULLABLE'],
    ]);
    expect(table.timePartitioning).toMatchObject({ type: 'DAY', field: 'received_at' });
    expect(table.clustering).toEqual({ fields: ['site', 'line', 'sensor'] });

    await publishV5(node.mqttPort, [
      { topic: 'plant/north/l1/pressure/p1', payload: '{"bar": 2.5, "ts": "2026-12-01T10:00:00Z", "count": 9007199254740993, "ok": true, "extra": {"a": [1, 2]}}', fw: '1.2.3' },
      { topic: 'plant/north/l1/pressure/p2', payload: '{"bar": 3, "status": "high", "ts": 1764583200000, "count": -4, "ok": false}' },
      { topic: 'plant/north/l1/pressure/p3', payload: '{"bar": "abc", "ts": 1764583200000, "count": 1, "ok": true}' },
      { topic: 'plant/south/flow/m7', payload: '{"m3h": 12.25, "other": "ignored"}' },
      { topic: 'debug/a', payload: 'noise' },
      { topic: 'debug/b/c', payload: 'noise' },
      { topic: 'debug', payload: 'noise' },
      { topic: 'other/x', payload: 'unrouted', fw: '9' },
    ]);

    const pressure = await pullAll(emu.host, emu.projectId, 'pressure-check', 2, 30_000);
    expect(pressure.map((m) => m.attributes.mqtt_topic).sort()).toEqual(['plant/north/l1/pressure/p1', 'plant/north/l1/pressure/p2']);
    const p1 = pressure.find((m) => m.attributes.mqtt_topic.endsWith('/p1'))!;
    expect(p1.attributes).toMatchObject({ site: 'north', line: 'l1', sensor: 'p1', firmware: '1.2.3', mqtt_user_fw: '1.2.3', mqtt_qos: '1' });
    expect(p1.orderingKey).toBe('north/p1');
    expect(p1.data.toString()).toContain('"bar": 2.5');
    const p2 = pressure.find((m) => m.attributes.mqtt_topic.endsWith('/p2'))!;
    expect(p2.attributes.firmware).toBeUndefined();
    expect(p2.orderingKey).toBe('north/p2');

    const flow = await pullAll(emu.host, emu.projectId, 'flow-check', 1, 30_000);
    expect(flow).toHaveLength(1);
    expect(JSON.parse(flow[0]!.data.toString())).toEqual({ site: 'south', meter: 'm7', m3h: 12.25 });
    expect(flow[0]!.orderingKey).toBe('');

    // Only what matches no route goes to PUBSUB_TOPIC and the raw table; the dropped ones go nowhere.
    const raw = await pullAll(emu.host, emu.projectId, 'plant-raw-check', 1, 30_000);
    expect(raw.map((m) => m.attributes.mqtt_topic)).toEqual(['other/x']);
    expect(raw[0]!.attributes.mqtt_user_fw).toBe('9');
    await waitFor(() => bq.rows('plant', 'raw').length >= 1, 30_000, 'the raw row');
    expect(bq.rows('plant', 'raw').map((r) => r.json.topic)).toEqual(['other/x']);
    expect(JSON.parse(String(bq.rows('plant', 'raw')[0]!.json.user_properties))).toEqual({ fw: '9' });

    await waitFor(() => bq.rows('plant', 'pressure').length >= 2, 30_000, 'two typed rows');
    const rows = new Map(bq.rows('plant', 'pressure').map((r) => [r.json.sensor, r]));
    expect(rows.get('p1')!.insertId).toBe(rows.get('p1')!.json.message_id);
    expect(rows.get('p1')!.json).toMatchObject({ site: 'north', line: 'l1', bar: 2.5, measured_at: '2026-12-01T10:00:00.000Z', firmware: '1.2.3', count: '9007199254740993', ok: true, extra: '{"a":[1,2]}' });
    expect(rows.get('p2')!.json).toMatchObject({ bar: 3, status: 'high', measured_at: '2025-12-01T10:00:00.000Z', count: -4, ok: false, firmware: null });

    // The bad value: dead-lettered for both sinks of its route, naming the field and quoting the value.
    await waitFor(async () => (await node.metric('mqtt_ingest_route_messages_total', { route: 'pressure', outcome: 'dead_lettered' })) === 1, 15_000, 'the dead letter counted');
    const dead = (await dlqJson(node.dataDir)).filter((d) => d.topic === 'plant/north/l1/pressure/p3');
    expect(dead.map((d) => d.sink).sort()).toEqual(['bigquery', 'file', 'pubsub']);
    for (const d of dead) {
      expect(d.reason).toBe('field_invalid');
      expect(String(d.detail)).toContain('route pressure: field bar: payload.bar = "abc"');
    }

    // The file sink: a routed line names its route and carries its fields.
    await waitFor(() => readFileSink(path.join(node.dataDir, 'out')).length >= 4, 15_000, 'four NDJSON lines');
    const out = new Map(readFileSink(path.join(node.dataDir, 'out')).map((l) => [l.topic, l as unknown as Record<string, unknown>]));
    expect(out.get('plant/north/l1/pressure/p1')).toMatchObject({ route: 'pressure', fields: { site: 'north', line: 'l1', sensor: 'p1', bar: 2.5, ok: true, firmware: '1.2.3' } });
    // An INT64 beyond 2^53 is written with its exact digits.
    const text = readdirSync(path.join(node.dataDir, 'out')).map((f) => readFileSync(path.join(node.dataDir, 'out', f), 'utf8')).join('');
    expect(text).toContain('"count":9007199254740993');
    expect(out.get('other/x')!.route).toBeUndefined();
    expect([...out.keys()].some((t) => t.startsWith('debug'))).toBe(false);

    expect(await node.metric('mqtt_ingest_route_messages_total', { route: 'pressure', outcome: 'delivered' })).toBe(2);
    expect(await node.metric('mqtt_ingest_route_messages_total', { route: 'flow', outcome: 'delivered' })).toBe(1);
    expect(await node.metric('mqtt_ingest_route_messages_total', { route: 'debug', outcome: 'dropped' })).toBe(3);
    expect(await node.metric('mqtt_ingest_messages_dropped_total', { route: 'debug' })).toBe(3);
    expect(await node.metric('mqtt_ingest_route_messages_total', { route: 'unmatched', outcome: 'delivered' })).toBe(1);
    await waitFor(async () => (await node.metric('mqtt_ingest_spool_messages')) === 0, 15_000, 'the spool drained');
    expect(await node.stop()).toBe(0);

    // A release later the route reads an optional field: its column is added to the existing table at start.
    writeFileSync(file, PLANT_WITH_TEMP);
    const again = await start(env, node.dataDir);
    expect(again.logObjects().filter((l) => l.code === 'BIGQUERY_COLUMNS_ADDED').map((l) => l.columns)).toEqual([['temp']]);
    expect(bq.tables.get('plant.pressure')!.resource.schema.fields.at(-1)).toMatchObject({ name: 'temp', type: 'FLOAT', mode: 'NULLABLE' });
    await publishV5(again.mqttPort, [{ topic: 'plant/north/l1/pressure/p4', payload: '{"bar": 1, "ts": 0, "count": 1, "ok": true, "temp": 21.5}' }]);
    await waitFor(() => bq.rows('plant', 'pressure').some((r) => r.json.sensor === 'p4'), 30_000, 'the row with temp');
    expect(bq.rows('plant', 'pressure').find((r) => r.json.sensor === 'p4')!.json.temp).toBe(21.5);
    expect(await again.stop()).toBe(0);
  }, 180_000);

  it.each(['dead_letter', 'drop'] as const)('unmatched: %s', async (unmatched) => {
    const file = routesFile(`routes:\n  - name: only\n    topic: known/{x}\nunmatched: ${unmatched}\n`);
    const node = await start({ MQTT_BROKER_MODE: 'mosquitto', FILE_SINK: 'on', ROUTES_FILE: file });
    await publishV5(node.mqttPort, [{ topic: 'known/1', payload: 'a' }, { topic: 'unknown/1', payload: 'b' }]);
    const outcome = unmatched === 'drop' ? 'dropped' : 'dead_lettered';
    await waitFor(
      async () =>
        (await node.metric('mqtt_ingest_route_messages_total', { route: 'only', outcome: 'delivered' })) === 1 &&
        (await node.metric('mqtt_ingest_route_messages_total', { route: 'unmatched', outcome })) === 1,
      15_000,
      'both handled',
    );
    expect(readFileSink(path.join(node.dataDir, 'out')).map((l) => l.topic)).toEqual(['known/1']);
    const dead = await dlqJson(node.dataDir);
    if (unmatched === 'dead_letter') {
      expect(dead.map((d) => [d.topic, d.reason])).toEqual([['unknown/1', 'no_route']]);
    } else {
      expect(dead).toEqual([]);
      expect(await node.metric('mqtt_ingest_messages_dropped_total', { route: 'unmatched' })).toBe(1);
    }
    expect(await node.stop()).toBe(0);
  }, 60_000);

  it('a backlog spooled under one routes file is delivered by the routes of the next start', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'backlog-v1', 'backlog-v1-check');
    await createTopicAndSubscription(emu.host, emu.projectId, 'backlog-v2', 'backlog-v2-check');
    const file = routesFile('routes:\n  - name: line\n    topic: line/{n}\n    pubsub:\n      topic: backlog-v1\n    bigquery: false\n');
    // Pub/Sub unreachable: the messages stay in the spool.
    const closed = await freePort();
    const env = { ...cloud('backlog-v1', 'backlog'), ROUTES_FILE: file, PUBSUB_EMULATOR_HOST: `127.0.0.1:${closed}` };
    const first = await start(env);
    await publishV5(first.mqttPort, Array.from({ length: 5 }, (_, i) => ({ topic: `line/${i}`, payload: `m${i}` })));
    await waitFor(async () => (await first.metric('mqtt_ingest_messages_received_total')) === 5, 15_000, 'five spooled');
    expect(await first.stop()).toBe(0);

    writeFileSync(file, 'routes:\n  - name: line\n    topic: line/{n}\n    pubsub:\n      topic: backlog-v2\n      attributes: [n]\n    bigquery: false\n');
    const second = await start({ ...env, PUBSUB_EMULATOR_HOST: emu.host }, first.dataDir);
    const got = await pullAll(emu.host, emu.projectId, 'backlog-v2-check', 5, 30_000);
    expect(got.map((m) => m.attributes.n).sort()).toEqual(['0', '1', '2', '3', '4']);
    expect(await pullAll(emu.host, emu.projectId, 'backlog-v1-check', 1, 2_000)).toEqual([]);
    expect(await second.stop()).toBe(0);
  }, 120_000);

  it('check-config lists five mistakes of a routes file at once, and prints the routes of a good one', async () => {
    const bad = routesFile(`routes:
  - name: a
    topic: plant/{site}/x
    decode: json
    colour: red
    fields:
      v: { from: payload.v, type: decimal }
    pubsub:
      ordering_key: "{sensor}"
  - name: a
    topic: other/#
  - name: late
    topic: plant/{site}/x
unmatched: raw
`);
    const env = baseEnv({ GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'raw', ROUTES_FILE: bad });
    const r = await runCli(['check-config'], env);
    expect(r.code).toBe(1);
    const problems = r.stderr.split('\n').filter((l) => l.includes('ROUTES_FILE'));
    expect(problems).toHaveLength(5);
    expect(r.stderr).toContain('colour');
    expect(r.stderr).toContain('"decimal" is not a field type');
    expect(r.stderr).toContain('uses {sensor}, which the topic does not capture');
    expect(r.stderr).toContain('name: is also the name of routes[0]');
    expect(r.stderr).toContain('can never match');

    const good = await runCli(['check-config'], baseEnv({ GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'raw', BIGQUERY_DATASET: 'd', BIGQUERY_TABLE: 'raw', ROUTES_FILE: routesFile(PLANT) }));
    expect(good.code).toBe(0);
    expect(good.stdout).toContain('#   1. pressure: plant/{site}/{line}/pressure/{sensor} (decode json; bar float ← payload.bar');
    expect(good.stdout).toContain('#   3. debug: debug/# → dropped');
    expect(good.stdout).toContain('#   unmatched: raw');
  }, 60_000);
});
