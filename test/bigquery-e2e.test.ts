import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode } from './helpers/node-process.js';
import { createTopicAndSubscription, hasPubSubEmulator, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { hasMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { publishRange, pullUntilUnique, sensorPayload, seqOf } from './helpers/load.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { waitFor } from './helpers/ports.js';
import { startBigQueryServer, type BigQueryServer } from './helpers/bigquery-server.js';

const run =
  serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component') &&
  serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

/** The rows' sequence numbers, and how fast and in what batches the node wrote them. */
function summary(s: BigQueryServer, dataset: string, table: string) {
  const inserts = s.requests.filter((r) => r.path.endsWith(`/datasets/${dataset}/tables/${table}/insertAll`) && r.status === 200);
  const sizes = inserts.map((r) => r.rows ?? 0);
  const seconds = inserts.length > 1 ? (inserts.at(-1)!.at - inserts[0]!.at) / 1000 : 0;
  const rows = sizes.reduce((a, b) => a + b, 0);
  return {
    seqs: new Set(s.rows(dataset, table).map((r) => seqOf(String(r.json.payload)))),
    requests: inserts.length,
    meanBatch: Math.round(rows / Math.max(1, inserts.length)),
    maxBatch: Math.max(0, ...sizes),
    rowsPerSecond: seconds > 0 ? Math.round(rows / seconds) : rows,
  };
}

describe.runIf(run)('Mosquitto → spool → Pub/Sub and BigQuery at once', () => {
  let emu: PubSubEmulator;
  let bq: BigQueryServer;
  beforeAll(async () => {
    emu = await startPubSubEmulator();
    bq = await startBigQueryServer({ projectId: emu.projectId });
  });
  afterAll(async () => {
    await Promise.all([emu?.stop(), bq?.stop()]);
  });

  it('delivers 20,000 messages to both sinks: every row once in BigQuery, every message in Pub/Sub', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'both', 'both-check');
    const node = await startNode({
      MQTT_BROKER_MODE: 'mosquitto',
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: 'both',
      PUBSUB_EMULATOR_HOST: emu.host,
      BIGQUERY_DATASET: 'both',
      BIGQUERY_TABLE: 'raw',
      BIGQUERY_API_ENDPOINT: bq.url,
    });
    try {
      await node.waitReady();
      const t0 = Date.now();
      await publishRange(`mqtt://127.0.0.1:${node.mqttPort}`, 0, 20_000);
      const received = await pullUntilUnique(emu.host, emu.projectId, 'both-check', 20_000, (r) => seqOf(r.data), 120_000);
      await waitFor(() => bq.rows('both', 'raw').length >= 20_000, 60_000, '20,000 BigQuery rows');
      const elapsed = (Date.now() - t0) / 1000;

      expect(new Set(received.map((r) => seqOf(r.data))).size).toBe(20_000);
      const rows = bq.rows('both', 'raw');
      expect(rows).toHaveLength(20_000);
      const s = summary(bq, 'both', 'raw');
      expect(s.seqs.size).toBe(20_000);
      expect(s.maxBatch).toBeLessThanOrEqual(500);
      const byId = new Map(received.map((r) => [r.attributes.message_id, r]));
      for (const row of rows.slice(0, 500)) {
        // The same identity in both sinks: the Pub/Sub attribute message_id is the BigQuery insertId and column.
        expect(row.insertId).toBe(row.json.message_id);
        const msg = byId.get(row.insertId!)!;
        expect(msg.data.toString()).toBe(row.json.payload);
        expect(row.json).toMatchObject({ topic: msg.attributes.mqtt_topic, received_at: msg.attributes.received_at, qos: 1, retain: false, payload_encoding: 'utf8' });
        expect(JSON.parse(String(row.json.data))).toEqual(JSON.parse(sensorPayload(seqOf(msg.data))));
      }
      await waitFor(async () => (await node.metric('mqtt_ingest_spool_messages')) === 0, 20_000, 'spool drained');
      console.log(
        `bigquery e2e: 20,000 messages into Pub/Sub and BigQuery in ${elapsed.toFixed(1)} s end to end; BigQuery: ` +
          `${s.requests} insertAll requests, mean ${s.meanBatch} rows, max ${s.maxBatch}, ${s.rowsPerSecond} rows/s while writing`,
      );
    } finally {
      await node.kill();
    }
  });

  it('keeps delivering to Pub/Sub while BigQuery is down, and catches BigQuery up afterwards', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'bqdown', 'bqdown-check');
    const proxy = await startTcpProxy('127.0.0.1', Number(new URL(bq.url).port));
    const node = await startNode({
      MQTT_BROKER_MODE: 'mosquitto',
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: 'bqdown',
      PUBSUB_EMULATOR_HOST: emu.host,
      BIGQUERY_DATASET: 'bqdown',
      BIGQUERY_TABLE: 'raw',
      BIGQUERY_API_ENDPOINT: `http://127.0.0.1:${proxy.port}`,
      RETRY_INITIAL_DELAY_MS: '200',
      RETRY_MAX_DELAY_MS: '2000',
    });
    try {
      await node.waitReady();
      const url = `mqtt://127.0.0.1:${node.mqttPort}`;
      await publishRange(url, 0, 200);
      await waitFor(() => bq.rows('bqdown', 'raw').length === 200, 20_000, 'first 200 rows');
      await pullUntilUnique(emu.host, emu.projectId, 'bqdown-check', 200, (r) => seqOf(r.data), 30_000);

      proxy.cut();
      await publishRange(url, 200, 10_200);
      // Pub/Sub gets all 10,000 while BigQuery cannot be reached.
      const during = await pullUntilUnique(emu.host, emu.projectId, 'bqdown-check', 10_000, (r) => seqOf(r.data), 60_000);
      expect(new Set(during.map((r) => seqOf(r.data))).size).toBe(10_000);
      expect(bq.rows('bqdown', 'raw')).toHaveLength(200);
      await waitFor(async () => (await node.metric('mqtt_ingest_spool_pending_messages', { sink: 'pubsub' })) === 0, 20_000, 'nothing pending for Pub/Sub');
      expect(await node.metric('mqtt_ingest_spool_pending_messages', { sink: 'bigquery' })).toBe(10_000);
      expect(await node.metric('mqtt_ingest_spool_messages')).toBe(10_000); // a row leaves only when both sinks are done
      const ready = await node.readiness();
      expect(ready.status).toBe(200);
      expect((ready.body.sinks as Record<string, { state: string }>).bigquery!.state).not.toBe('ok');
      expect((ready.body.sinks as Record<string, { state: string }>).pubsub!.state).toBe('ok');

      const before = bq.requests.length;
      await proxy.restore();
      const restoredAt = Date.now();
      await waitFor(() => bq.rows('bqdown', 'raw').length === 10_200, 60_000, 'BigQuery caught up');
      const caughtUp = (Date.now() - restoredAt) / 1000;
      expect(summary(bq, 'bqdown', 'raw').seqs.size).toBe(10_200);
      const drained = bq.requests.slice(before).filter((r) => r.path.endsWith('/insertAll') && r.status === 200);
      const span = (drained.at(-1)!.at - drained[0]!.at) / 1000;
      console.log(
        `bigquery catch-up: 10,000 spooled rows written in ${caughtUp.toFixed(1)} s after the outage ended ` +
          `(${drained.length} requests, ${Math.round(10_000 / Math.max(span, 0.001))} rows/s from the first to the last request)`,
      );
      await waitFor(async () => (await node.metric('mqtt_ingest_spool_messages')) === 0, 20_000, 'spool drained');
    } finally {
      await node.kill();
      await proxy.close();
    }
  });
});
