import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode } from './helpers/node-process.js';
import { hasMosquitto, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { publishRange, seqOf } from './helpers/load.js';
import { waitFor } from './helpers/ports.js';
import { startBigQueryServer, type BigQueryServer } from './helpers/bigquery-server.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

describe.runIf(run)('BigQuery sink: SIGKILL mid-stream, then restart', () => {
  let broker: TestMosquitto;
  let bq: BigQueryServer;
  beforeAll(async () => {
    [broker, bq] = await Promise.all([startMosquitto({ persistence: true }), startBigQueryServer()]);
  });
  afterAll(async () => {
    await Promise.all([broker?.stop(), bq?.stop()]);
  });

  it('has every message in BigQuery exactly once by insertId after a SIGKILL in a 20,000-message stream', async () => {
    const env = {
      MQTT_BROKER: broker.url,
      MQTT_CLIENT_ID: 'ingest-bq-crash-test',
      MQTT_TOPICS: 'plant/#',
      GCP_PROJECT_ID: bq.projectId,
      BIGQUERY_DATASET: 'crash',
      BIGQUERY_TABLE: 'raw',
      BIGQUERY_API_ENDPOINT: bq.url,
    };
    const first = await startNode(env);
    await first.waitReady();
    let killed: Promise<void> | undefined;
    await publishRange(broker.url, 0, 20_000, {
      onProgress: (acked) => {
        if (acked === 8_000) killed = first.kill();
      },
    });
    await killed;
    expect(first.proc.signalCode).toBe('SIGKILL');
    const second = await startNode(env, { dataDir: first.dataDir });
    try {
      await second.waitReady();
      await waitFor(() => new Set(bq.rows('crash', 'raw').map((r) => seqOf(String(r.json.payload)))).size === 20_000, 120_000, 'all 20,000 seqs');
      await waitFor(async () => (await second.metric('mqtt_ingest_spool_messages')) === 0, 20_000, 'spool drained');
      const rows = bq.rows('crash', 'raw');
      // One identity per message: each message is in the table under one insertId (= message_id), once.
      const idsBySeq = new Map<number, Set<string>>();
      for (const r of rows) {
        expect(r.insertId).toBe(r.json.message_id);
        const seq = seqOf(String(r.json.payload));
        idsBySeq.set(seq, (idsBySeq.get(seq) ?? new Set()).add(r.insertId!));
      }
      expect(new Set(rows.map((r) => r.insertId)).size).toBe(rows.length);
      const twice = [...idsBySeq].filter(([, ids]) => ids.size > 1).map(([seq]) => seq);
      expect(twice).toEqual([]);
      expect(rows).toHaveLength(20_000);
      const sent = bq.requests.filter((r) => r.path.endsWith('/insertAll')).reduce((n, r) => n + (r.rows ?? 0), 0);
      console.log(
        `bigquery crash test: ${sent} rows sent for 20,000 messages; ${bq.duplicates} repeated insertIds de-duplicated by the table, ` +
          `${rows.length} rows stored`,
      );
    } finally {
      await second.kill();
    }
  });
});
