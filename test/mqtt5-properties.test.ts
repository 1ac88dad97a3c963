import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { startNode } from './helpers/node-process.js';
import { createTopicAndSubscription, hasPubSubEmulator, pullAll, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { hasMosquitto, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { waitFor } from './helpers/ports.js';
import { startBigQueryServer, type BigQueryServer } from './helpers/bigquery-server.js';
import { readFileSink } from './helpers/file-output.js';
import { RAW_TABLE_FIELDS } from '../src/sinks/bigquery/schema.js';

const run =
  serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component') &&
  serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

/** What an MQTT 5 publisher sends: properties of every kind, a content type alone, and none. */
const SENT = [
  {
    topic: 'plant/a',
    payload: '{"t":21.5}',
    properties: { userProperties: { site: 'Zürich', 'temp°C': 'x', tag: ['a', 'b'] }, contentType: 'application/json' },
  },
  { topic: 'plant/b', payload: 'plain', properties: { contentType: 'text/plain' } },
  { topic: 'plant/c', payload: 'none', properties: undefined },
] as const;

/** The table as a node without the property columns made it: the node adds them at start. */
const OLD_FIELDS = RAW_TABLE_FIELDS.filter((f) => f.name !== 'user_properties' && f.name !== 'content_type').map((f) => ({ ...f }));

async function publishV5(url: string): Promise<void> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5_000 });
  try {
    for (const m of SENT) {
      await client.publishAsync(m.topic, m.payload, { qos: 1, ...(m.properties ? { properties: m.properties as mqtt.IClientPublishOptions['properties'] } : {}) });
    }
  } finally {
    await client.endAsync();
  }
}

describe.runIf(run)('MQTT 5 properties from publisher to every sink', () => {
  let emu: PubSubEmulator;
  let bq: BigQueryServer;
  let broker: TestMosquitto;
  beforeAll(async () => {
    [emu, broker] = await Promise.all([startPubSubEmulator(), startMosquitto({ persistence: false })]);
    bq = await startBigQueryServer({ projectId: emu.projectId });
  });
  afterAll(async () => {
    await Promise.all([emu?.stop(), bq?.stop(), broker?.stop()]);
  });

  it.each(['mosquitto', 'external'] as const)('%s mode: Pub/Sub attributes, BigQuery columns, NDJSON keys', async (mode) => {
    await createTopicAndSubscription(emu.host, emu.projectId, `props-${mode}`, `props-${mode}-check`);
    // An existing raw table of an older version: the node patches the two columns in at start.
    bq.createTable(mode, 'raw', { schema: { fields: OLD_FIELDS }, timePartitioning: { type: 'DAY', field: 'received_at' }, clustering: { fields: ['topic'] } });
    const node = await startNode({
      ...(mode === 'external' ? { MQTT_BROKER: broker.url, MQTT_CLIENT_ID: 'ingest-props-test', MQTT_TOPICS: 'plant/#' } : { MQTT_BROKER_MODE: 'mosquitto' }),
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: `props-${mode}`,
      PUBSUB_EMULATOR_HOST: emu.host,
      BIGQUERY_DATASET: mode,
      BIGQUERY_TABLE: 'raw',
      BIGQUERY_API_ENDPOINT: bq.url,
      FILE_SINK: 'on',
    });
    try {
      await node.waitReady();
      expect(node.logObjects().filter((l) => l.code === 'BIGQUERY_COLUMNS_ADDED').map((l) => l.columns)).toEqual([['user_properties', 'content_type']]);
      expect(bq.tables.get(`${mode}.raw`)!.resource.schema.fields.map((f) => f.name)).toEqual(RAW_TABLE_FIELDS.map((f) => f.name));

      await publishV5(mode === 'external' ? broker.url : `mqtt://127.0.0.1:${node.mqttPort}`);

      const received = await pullAll(emu.host, emu.projectId, `props-${mode}-check`, 3, 30_000);
      const byTopic = new Map(received.map((r) => [r.attributes.mqtt_topic, r.attributes]));
      expect(byTopic.size).toBe(3);
      expect(byTopic.get('plant/a')).toMatchObject({
        mqtt_content_type: 'application/json',
        mqtt_user_site: 'Zürich',
        mqtt_user_temp_C: 'x',
        mqtt_user_tag: 'a,b',
        mqtt_qos: '1',
      });
      expect(Object.keys(byTopic.get('plant/b')!).sort()).toEqual(['message_id', 'mqtt_content_type', 'mqtt_qos', 'mqtt_retain', 'mqtt_topic', 'received_at']);
      expect(byTopic.get('plant/b')!.mqtt_content_type).toBe('text/plain');
      expect(Object.keys(byTopic.get('plant/c')!).sort()).toEqual(['message_id', 'mqtt_qos', 'mqtt_retain', 'mqtt_topic', 'received_at']);

      await waitFor(() => bq.rows(mode, 'raw').length >= 3, 30_000, 'three BigQuery rows');
      const rows = new Map(bq.rows(mode, 'raw').map((r) => [r.json.topic, r.json]));
      expect(JSON.parse(String(rows.get('plant/a')!.user_properties))).toEqual({ site: 'Zürich', 'temp°C': 'x', tag: ['a', 'b'] });
      expect(rows.get('plant/a')!.content_type).toBe('application/json');
      expect([rows.get('plant/b')!.user_properties ?? null, rows.get('plant/b')!.content_type]).toEqual([null, 'text/plain']);
      expect([rows.get('plant/c')!.user_properties ?? null, rows.get('plant/c')!.content_type ?? null]).toEqual([null, null]);

      const out = path.join(node.dataDir, 'out');
      await waitFor(() => readFileSink(out).length >= 3, 30_000, 'three NDJSON lines');
      const lines = new Map(readFileSink(out).map((l) => [l.topic, l as unknown as Record<string, unknown>]));
      expect(lines.get('plant/a')).toMatchObject({ user_properties: { site: 'Zürich', 'temp°C': 'x', tag: ['a', 'b'] }, content_type: 'application/json' });
      expect(lines.get('plant/b')).toMatchObject({ user_properties: null, content_type: 'text/plain' });
      expect(lines.get('plant/c')).toMatchObject({ user_properties: null, content_type: null });
      expect(await node.stop()).toBe(0);
    } finally {
      await node.kill();
    }
  }, 120_000);
});
