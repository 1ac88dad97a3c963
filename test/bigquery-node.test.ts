import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { baseEnv, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { startBigQueryServer, type BigQueryServer } from './helpers/bigquery-server.js';
import { publishRange, sensorPayload, seqOf } from './helpers/load.js';
import { freePort, waitFor } from './helpers/ports.js';
import { RAW_TABLE_FIELDS } from '../src/sinks/bigquery/schema.js';

/**
 * The node with the BigQuery sink against the strict local BigQuery server (embedded broker: these tests are
 * about the sink, the spool and the dlq commands; test/bigquery-e2e.test.ts goes through Mosquitto).
 */
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(port?: number): Promise<BigQueryServer> {
  const s = await startBigQueryServer({ port });
  cleanups.push(() => s.stop());
  return s;
}

function bqEnv(s: { url: string; projectId: string }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MQTT_BROKER_MODE: 'embedded',
    GCP_PROJECT_ID: s.projectId,
    BIGQUERY_DATASET: 'telemetry',
    BIGQUERY_TABLE: 'raw',
    BIGQUERY_API_ENDPOINT: s.url,
    RETRY_INITIAL_DELAY_MS: '100',
    RETRY_MAX_DELAY_MS: '1000',
    ...extra,
  };
}

async function node(env: Record<string, string>, dataDir?: string): Promise<NodeProcess> {
  const n = await startNode(env, { dataDir });
  cleanups.push(() => n.kill());
  return n;
}

const mqttUrl = (n: NodeProcess) => `mqtt://127.0.0.1:${n.mqttPort}`;
const seqsIn = (s: BigQueryServer) => s.rows('telemetry', 'raw').map((r) => seqOf(String(r.json.payload)));
type SinkState = { state: string; detail?: string; lastError?: string };
const bigquerySink = async (n: NodeProcess) => ((await n.readiness()).body.sinks as Record<string, SinkState>).bigquery!;

describe('BigQuery sink in the running node', () => {
  it('keeps every good row of mixed batches once, dead-letters each bad row with the server reason, and replays them', async () => {
    const s = await server();
    s.rejectWhen((row) => (String(row.topic).startsWith('bad/') ? 'refused by the table policy for bad/ topics' : undefined));
    const env = bqEnv(s);
    const n = await node(env);
    await n.waitReady();
    await publishRange(mqttUrl(n), 0, 1000, { topic: (i) => (i % 10 === 3 ? `bad/${i}` : `plant/${i % 64}`) });
    // BigQuery's own rule: JSON nested deeper than 500 levels is invalid, whatever the table policy.
    const client = await mqtt.connectAsync(mqttUrl(n), { protocolVersion: 4 });
    const deep = '['.repeat(600) + ']'.repeat(600);
    for (let i = 0; i < 5; i++) await client.publishAsync(`plant/deep/${i}`, deep, { qos: 1 });
    await client.endAsync();

    await waitFor(async () => (await n.metric('mqtt_ingest_dead_letters_total', { sink: 'bigquery', reason: 'invalid' })) === 105, 30_000, '105 dead letters');
    await waitFor(() => s.rows('telemetry', 'raw').length === 900, 30_000, '900 good rows');
    const stored = s.rows('telemetry', 'raw');
    expect(new Set(seqsIn(s)).size).toBe(900);
    expect(stored.every((r) => r.insertId === r.json.message_id)).toBe(true);
    expect(stored.some((r) => String(r.json.topic).startsWith('bad/'))).toBe(false);
    // Nothing left to retry: each bad row left the spool as a dead letter and was sent in one request only.
    await waitFor(async () => (await n.metric('mqtt_ingest_spool_messages')) === 0, 10_000, 'spool drained');
    const badIds = new Set((await dlqJson(env, n.dataDir)).map((d) => d.message_id));
    const sends = s.requests.flatMap((r) => r.insertIds ?? []).filter((id) => badIds.has(id));
    expect(sends.length).toBe(105);
    expect(await n.metric('mqtt_ingest_dead_letters')).toBe(105);

    const listed = await dlqJson(env, n.dataDir);
    expect(listed).toHaveLength(105);
    const bad3 = listed.find((d) => d.topic === 'bad/3')!;
    expect(bad3).toMatchObject({ sink: 'bigquery', reason: 'invalid', detail: 'refused by the table policy for bad/ topics (invalid)', payload: sensorPayload(3), payload_encoding: 'utf8' });
    expect(listed.filter((d) => String(d.detail).includes('JSON nesting depth 600'))).toHaveLength(5);
    const table = await runCli(['dlq', 'list', '--sink', 'bigquery', '--limit', '3'], baseEnv({ ...env, DATA_DIR: n.dataDir }));
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^\s+id\s+sink\s+reason\s+topic/);
    expect(table.stdout).toMatch(/\n\s+\d+ {2}bigquery +invalid +bad\/3 /);
    expect(table.stdout).toContain('3 dead letters (bigquery: 3), first 3 shown');

    // The table policy is lifted: replay while the node runs. Only the deep JSON is refused again.
    s.rejectWhen(undefined);
    const replay = await runCli(['dlq', 'replay', '--sink', 'bigquery'], baseEnv({ ...env, DATA_DIR: n.dataDir }));
    expect(replay.stdout).toContain('replayed 105 dead letters (bigquery: 105)');
    await waitFor(() => s.rows('telemetry', 'raw').length === 1000, 15_000, 'replayed rows stored');
    await waitFor(async () => (await n.metric('mqtt_ingest_dead_letters_total', { sink: 'bigquery', reason: 'invalid' })) === 110, 15_000, 'deep JSON dead again');
    expect(new Set(seqsIn(s)).size).toBe(1000);
    const again = await dlqJson(env, n.dataDir);
    expect(again.map((d) => d.topic).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `plant/deep/${i}`));
    expect(again.every((d) => badIds.has(d.message_id))).toBe(true); // the original message_id is kept

    const purge = await runCli(['dlq', 'purge', '--older-than', '0s'], baseEnv({ ...env, DATA_DIR: n.dataDir }));
    expect(purge.stdout).toContain('purged 5 dead letters older than 0s');
    expect(await dlqJson(env, n.dataDir)).toEqual([]);
  });

  it('rides out bursts of 503, 429 and 403 rateLimitExceeded: every row arrives once, each failure counted', async () => {
    const s = await server();
    const n = await node(bqEnv(s, { BIGQUERY_BATCH_MAX_ROWS: '100' }));
    await n.waitReady();
    s.failNext(503, 4);
    s.failNext(429, 2);
    s.failNext(403, 2, { reason: 'rateLimitExceeded' });
    s.failNext(403, 1, { reason: 'quotaExceeded' });
    s.failNext(503, 3);
    await publishRange(mqttUrl(n), 0, 3000);
    await waitFor(() => new Set(seqsIn(s)).size === 3000, 60_000, '3000 rows');
    expect(s.rows('telemetry', 'raw')).toHaveLength(3000);
    const failed = s.requests.filter((r) => r.path.endsWith('/insertAll') && r.status !== 200).map((r) => r.status);
    expect(failed).toEqual([503, 503, 503, 503, 429, 429, 403, 403, 403, 503, 503, 503]);
    expect(await n.metric('mqtt_ingest_delivery_failures_total', { sink: 'bigquery', reason: 'backend_error' })).toBeGreaterThanOrEqual(7);
    expect(await n.metric('mqtt_ingest_delivery_failures_total', { sink: 'bigquery', reason: 'rate_limited' })).toBeGreaterThanOrEqual(4);
    expect(await n.metric('mqtt_ingest_dead_letters_total', { sink: 'bigquery', reason: 'invalid' })).toBe(0);
    await waitFor(async () => (await bigquerySink(n)).state === 'ok', 10_000, 'sink ok again');
  });

  it('creates the dataset and table at start through BIGQUERY_EMULATOR_HOST, with no Authorization header', async () => {
    const s = await server();
    const env = bqEnv(s);
    delete env.BIGQUERY_API_ENDPOINT;
    const n = await node({ ...env, BIGQUERY_EMULATOR_HOST: `${s.url}/bigquery/v2`, BIGQUERY_LOCATION: 'EU' });
    await n.waitReady();
    expect(s.datasets.get('telemetry')).toEqual({ location: 'EU' });
    expect(s.tables.get('telemetry.raw')!.resource.schema.fields).toEqual(RAW_TABLE_FIELDS);
    await publishRange(mqttUrl(n), 0, 10);
    await waitFor(() => s.rows('telemetry', 'raw').length === 10, 10_000, '10 rows');
    expect(s.requests.every((r) => r.authorization === undefined)).toBe(true);
    expect(n.logObjects().some((l) => l.code === 'BIGQUERY_CREATED' && l.created === 'table')).toBe(true);
  });

  it('refuses to start on a table whose schema does not fit, listing the differences, and on a missing table without auto-create', async () => {
    const s = await server();
    s.createTable('telemetry', 'raw', {
      schema: { fields: RAW_TABLE_FIELDS.filter((f) => f.name !== 'payload_encoding').map((f) => (f.name === 'data' ? { ...f, type: 'STRING' } : { ...f })) },
    });
    const bad = await node(bqEnv(s));
    const exit = await bad.exited;
    expect(exit.code).toBe(1);
    const text = bad.logs.join('\n');
    expect(text).toContain('column payload_encoding is missing');
    expect(text).toContain('column data is STRING, want JSON');

    const missing = await node(bqEnv(s, { BIGQUERY_TABLE: 'other', BIGQUERY_AUTO_CREATE: 'off' }));
    expect((await missing.exited).code).toBe(1);
    expect(missing.logs.join('\n')).toContain('test-project:telemetry.other does not exist and BIGQUERY_AUTO_CREATE is off');
    expect(s.tables.has('telemetry.other')).toBe(false);
  });

  it('starts while BigQuery is unreachable, shows it in readiness, and delivers once it is up', async () => {
    const port = await freePort();
    const n = await node(bqEnv({ url: `http://127.0.0.1:${port}`, projectId: 'test-project' }));
    await n.waitReady();
    const during = await bigquerySink(n);
    expect(during.state).not.toBe('ok');
    expect(during.lastError).toMatch(/unavailable/);
    await publishRange(mqttUrl(n), 0, 200);
    const s = await server(port);
    await waitFor(() => s.rows('telemetry', 'raw').length === 200, 30_000, '200 rows after BigQuery came up');
    expect(s.tables.has('telemetry.raw')).toBe(true);
    await waitFor(async () => (await bigquerySink(n)).state === 'ok', 10_000, 'sink ok');
  });

  it('shows accessDenied as failing with what to fix, stays ready, and delivers once it is fixed', async () => {
    const s = await server();
    const n = await node(bqEnv(s));
    await n.waitReady();
    s.failNext(403, 10_000, { reason: 'accessDenied' });
    await publishRange(mqttUrl(n), 0, 100);
    await waitFor(async () => (await bigquerySink(n)).state === 'failing', 10_000, 'sink failing');
    const r = await n.readiness();
    expect(r.status).toBe(200);
    expect((r.body.sinks as Record<string, SinkState>).bigquery!.detail).toContain('roles/bigquery.dataEditor');
    expect(n.logObjects().some((l) => l.code === 'SINK_FAILING' && l.sink === 'bigquery' && l.severity === 'ERROR')).toBe(true);
    s.clearFailures();
    await waitFor(() => s.rows('telemetry', 'raw').length === 100, 15_000, '100 rows after the fix');
  });
});

async function dlqJson(env: Record<string, string>, dataDir: string): Promise<Record<string, any>[]> {
  const r = await runCli(['dlq', 'list', '--json'], baseEnv({ ...env, DATA_DIR: dataDir }));
  if (r.code !== 0) throw new Error(`dlq list failed: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);
}
