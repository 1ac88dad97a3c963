/**
 * Sparkplug B end to end (docs/sparkplug.md): a test edge node encoding with the schema publishes through a real
 * Mosquitto to the node (external mode, a persistent session), which writes one row per metric to the local
 * BigQuery server, resolving aliases with the births it keeps across its own restarts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { hasMosquitto, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { waitFor } from './helpers/ports.js';
import { startBigQueryServer, type BigQueryServer, type StoredRow } from './helpers/bigquery-server.js';
import { createTopicAndSubscription, hasPubSubEmulator, pullAll, startPubSubEmulator } from './helpers/pubsub-emulator.js';
import { SparkplugEdge, type BirthSpec, type EdgeMessage } from './helpers/sparkplug-edge.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

const ROUTES = `routes:
  - name: sparkplug
    topic: spBv1.0/#
    decode: sparkplug
    bigquery:
      table: sparkplug
unmatched: raw
`;

const NODE_METRICS: BirthSpec[] = [
  { name: 'Line/Speed', datatype: 'Double', value: 1.5 },
  { name: 'Counter/Big', datatype: 'UInt64', value: 2n ** 63n + 1n },
];
const DEVICE_METRICS: BirthSpec[] = [
  { name: 'Pump/Pressure', datatype: 'Float', value: 2.5 },
  { name: 'Pump/Offset', datatype: 'Int64', value: -(2n ** 53n + 1n) },
  { name: 'Pump/Running', datatype: 'Boolean', value: true },
  { name: 'Pump/Spectrum', datatype: 'Int16Array', value: [-32768, 0, 32767] },
];

async function connect(url: string, clientId: string): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(url, { clientId, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000 });
}

async function publish(client: mqtt.MqttClient, messages: EdgeMessage[], qos: 0 | 1 = 0): Promise<void> {
  for (const m of messages) await client.publishAsync(m.topic, m.payload, { qos });
}

function routesFile(): string {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'sparkplug-routes-')), 'routes.yaml');
  writeFileSync(file, ROUTES);
  return file;
}

describe.runIf(run)('Sparkplug B end to end', () => {
  let broker: TestMosquitto;
  let bq: BigQueryServer;
  const nodes: NodeProcess[] = [];
  const clients: mqtt.MqttClient[] = [];
  beforeAll(async () => {
    broker = await startMosquitto({ persistence: false });
    bq = await startBigQueryServer({ projectId: 'sp-project' });
  });
  afterAll(async () => {
    for (const c of clients) c.end(true);
    await Promise.all(nodes.map((n) => n.kill()));
    await Promise.all([broker?.stop(), bq?.stop()]);
  });

  const env = (dataset: string, extra: Record<string, string> = {}) => ({
    MQTT_BROKER: broker.url,
    MQTT_CLIENT_ID: `ingest-sparkplug-${dataset}`,
    MQTT_TOPICS: 'spBv1.0/#',
    GCP_PROJECT_ID: 'sp-project',
    BIGQUERY_DATASET: dataset,
    BIGQUERY_TABLE: 'raw',
    BIGQUERY_API_ENDPOINT: bq.url,
    ROUTES_FILE: routesFile(),
    ...extra,
  });

  async function start(e: Record<string, string>, dataDir?: string): Promise<NodeProcess> {
    const node = await startNode(e, dataDir ? { dataDir } : {});
    nodes.push(node);
    await node.waitReady();
    return node;
  }

  const named = (rows: StoredRow[], type: string) => rows.filter((r) => r.json.message_type === type);

  it('resolves aliases after a restart and through a backlog, exactly, and counts a seq gap and ignores a stale death', async () => {
    const e = env('plant');
    const edge = new SparkplugEdge('Plant1', 'Line4');
    const client = await connect(broker.url, 'edge-line4');
    clients.push(client);

    let node = await start(e);
    await publish(client, [edge.birth(NODE_METRICS), edge.deviceBirth('Pump1', DEVICE_METRICS)]);
    await waitFor(() => bq.rows('plant', 'sparkplug').length >= 6, 30_000, 'the birth rows');
    const births = bq.rows('plant', 'sparkplug');
    const big = births.find((r) => r.json.metric_name === 'Counter/Big')!;
    expect(big.json).toMatchObject({ message_type: 'NBIRTH', datatype: 'UInt64', int_value: '9223372036854775809', group_id: 'Plant1', edge_node_id: 'Line4' });
    expect(births.find((r) => r.json.metric_name === 'Pump/Offset')!.json).toMatchObject({ device_id: 'Pump1', datatype: 'Int64', int_value: '-9007199254740993' });
    expect(await node.stop()).toBe(0);

    // Restarted, the node resolves data that carries aliases only with the births it saw before.
    node = await start(e, node.dataDir);
    await publish(client, [edge.data([{ name: 'Pump/Pressure', value: 3.25 }, { name: 'Pump/Offset', value: -(2n ** 53n + 1n) }, { name: 'Pump/Spectrum', value: [1, -2, 3] }], 'Pump1')]);
    await waitFor(() => named(bq.rows('plant', 'sparkplug'), 'DDATA').length >= 3, 30_000, 'the data rows');
    const data = named(bq.rows('plant', 'sparkplug'), 'DDATA');
    expect(data.map((r) => [r.json.metric_name, r.json.datatype])).toEqual([
      ['Pump/Pressure', 'Float'],
      ['Pump/Offset', 'Int64'],
      ['Pump/Spectrum', 'Int16Array'],
    ]);
    expect(data[0]!.json.float_value).toBe(3.25);
    expect(data[1]!.json.int_value).toBe('-9007199254740993');
    expect(JSON.parse(String(data[2]!.json.json_value))).toEqual([1, -2, 3]);
    expect(data.every((r) => r.insertId === `${r.json.message_id}:${data.indexOf(r)}`)).toBe(true);
    expect(await node.stop()).toBe(0);

    // A backlog: data queued in the node's session while it was down (QoS 1), delivered when it returns.
    await publish(client, Array.from({ length: 20 }, (_, i) => edge.data([{ name: 'Line/Speed', value: i }])), 1);
    node = await start(e, node.dataDir);
    await waitFor(() => named(bq.rows('plant', 'sparkplug'), 'NDATA').length >= 20, 30_000, 'the backlog rows');
    const backlog = named(bq.rows('plant', 'sparkplug'), 'NDATA');
    expect(new Set(backlog.map((r) => r.json.metric_name))).toEqual(new Set(['Line/Speed']));
    expect(await node.metric('mqtt_ingest_sparkplug_unresolved_total')).toBe(0);

    // A lost message: the seq gap is counted.
    expect(await node.metric('mqtt_ingest_sparkplug_seq_gaps_total')).toBe(0);
    edge.data([{ name: 'Line/Speed', value: 99 }]); // made, never published
    await publish(client, [edge.data([{ name: 'Line/Speed', value: 100 }])]);
    await waitFor(async () => (await node.metric('mqtt_ingest_sparkplug_seq_gaps_total')) === 1, 15_000, 'the seq gap');

    // A stale NDEATH (an older session's will) after a new birth is ignored; the current one is written.
    const stale = edge.death();
    edge.reconnect();
    await publish(client, [edge.birth(NODE_METRICS), stale]);
    await waitFor(async () => (await node.metric('mqtt_ingest_route_messages_total', { route: 'sparkplug', outcome: 'dropped' })) === 1, 15_000, 'the stale death dropped');
    expect(node.logObjects().some((l) => l.code === 'SPARKPLUG_STALE_DEATH')).toBe(true);
    await publish(client, [edge.death()]);
    await waitFor(() => named(bq.rows('plant', 'sparkplug'), 'NDEATH').length === 1, 15_000, 'the current death');
    expect(await node.stop()).toBe(0);
  }, 180_000);

  it('SPARKPLUG_REBIRTH=on: an unknown alias makes the edge node receive an NCMD; its births resolve the waiting message', async () => {
    const e = env('rebirth', { SPARKPLUG_REBIRTH: 'on', SPARKPLUG_BIRTH_WAIT_SECONDS: '20' });
    const edge = new SparkplugEdge('Plant2', 'Edge9');
    const client = await connect(broker.url, 'edge-edge9');
    clients.push(client);
    await client.subscribeAsync('spBv1.0/Plant2/NCMD/Edge9', { qos: 0 });
    const commands: Buffer[] = [];
    client.on('message', (topic, payload) => {
      if (topic === 'spBv1.0/Plant2/NCMD/Edge9') commands.push(payload);
    });

    const node = await start(e);
    // The births happened before the node listened: it has never seen them.
    edge.birth(NODE_METRICS);
    await publish(client, [edge.data([{ name: 'Line/Speed', value: 7 }])]);
    await waitFor(() => commands.length >= 1, 15_000, 'the rebirth command');
    expect(node.logObjects().some((l) => l.code === 'SPARKPLUG_REBIRTH_REQUESTED')).toBe(true);
    expect(bq.rows('rebirth', 'sparkplug')).toEqual([]);

    // The edge node answers with its births; the waiting message resolves with them.
    await publish(client, [edge.birth(NODE_METRICS)]);
    await waitFor(() => named(bq.rows('rebirth', 'sparkplug'), 'NDATA').length === 1, 15_000, 'the waiting row');
    expect(named(bq.rows('rebirth', 'sparkplug'), 'NDATA')[0]!.json).toMatchObject({ metric_name: 'Line/Speed', datatype: 'Double', float_value: 7 });
    expect(await node.metric('mqtt_ingest_sparkplug_unresolved_total')).toBe(0);
    expect(await node.stop()).toBe(0);
  }, 120_000);
});

describe.runIf(serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component'))('Sparkplug B to Pub/Sub', () => {
  it('data: fields publishes the decoded message with names resolved and 64-bit values as text, with the Sparkplug attributes', async () => {
    const emu = await startPubSubEmulator();
    let node: NodeProcess | undefined;
    let client: mqtt.MqttClient | undefined;
    try {
      await createTopicAndSubscription(emu.host, emu.projectId, 'sparkplug-events', 'sparkplug-check');
      const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'sparkplug-routes-')), 'routes.yaml');
      writeFileSync(file, 'routes:\n  - name: sparkplug\n    topic: spBv1.0/#\n    decode: sparkplug\n    pubsub:\n      topic: sparkplug-events\n      data: fields\n');
      node = await startNode({ MQTT_BROKER_MODE: 'embedded', GCP_PROJECT_ID: emu.projectId, PUBSUB_TOPIC: 'sparkplug-events', PUBSUB_EMULATOR_HOST: emu.host, ROUTES_FILE: file });
      await node.waitReady();
      client = await connect(`mqtt://127.0.0.1:${node.mqttPort}`, 'edge-pubsub');
      const edge = new SparkplugEdge('Plant3', 'Edge1');
      await publish(client, [edge.birth(NODE_METRICS), edge.data([{ name: 'Counter/Big', value: 2n ** 63n + 1n }])], 1);
      const got = await pullAll(emu.host, emu.projectId, 'sparkplug-check', 2, 30_000);
      const data = got.find((m) => m.attributes.sparkplug_type === 'NDATA')!;
      expect(data.attributes).toMatchObject({ sparkplug_group: 'Plant3', sparkplug_edge_node: 'Edge1', mqtt_topic: 'spBv1.0/Plant3/NDATA/Edge1' });
      expect(data.attributes.sparkplug_device).toBeUndefined();
      const json = JSON.parse(data.data.toString()) as { message_type: string; metrics: Record<string, unknown>[] };
      expect(json.message_type).toBe('NDATA');
      expect(json.metrics).toEqual([expect.objectContaining({ name: 'Counter/Big', datatype: 'UInt64', value: '9223372036854775809' })]);
      expect(await node.stop()).toBe(0);
    } finally {
      client?.end(true);
      await node?.kill();
      await emu.stop();
    }
  }, 120_000);
});
