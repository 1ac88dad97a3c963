/**
 * `mqtt-ingest provision` with a routes file (ROUTES_FILE): every route's Pub/Sub topic and typed BigQuery
 * table, against the real Pub/Sub emulator and the local BigQuery test server, with the compiled CLI.
 */
import { PubSub } from '@google-cloud/pubsub';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeProblem, parseRoutes } from '../src/routes/routes-file.js';
import { typedTableResource } from '../src/routes/table-schema.js';
import { startBigQueryServer, type BigQueryServer } from './helpers/bigquery-server.js';
import { baseEnv, runCli } from './helpers/node-process.js';
import { hasPubSubEmulator, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { serviceAvailable } from './helpers/skip.js';

const run = serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component');

const PRESSURE_FIELDS = '      bar: { from: payload.bar, type: float }\n';

/** Three routes: two with their own topic and table, one on PUBSUB_TOPIC without a table. `p` keeps names apart per test. */
function routesText(p: string, opts: { pressureFields?: string; unmatched?: string } = {}): string {
  return `routes:
  - name: pressure
    topic: plant/{site}/pressure/{sensor}
    decode: json
    fields:
${opts.pressureFields ?? PRESSURE_FIELDS}    pubsub:
      topic: ${p}-pressure
      ordering_key: "{site}/{sensor}"
    bigquery:
      table: pressure
  - name: flow
    topic: plant/{site}/flow
    decode: json
    fields:
      lpm: { from: payload.lpm, type: float }
    pubsub:
      topic: ${p}-flow
    bigquery: { table: flow }
  - name: temp
    topic: plant/{site}/temp
    bigquery: false
unmatched: ${opts.unmatched ?? 'raw'}
`;
}

/** The pressure route of that text, as the node reads it. */
function pressureRoute(text: string) {
  const r = parseRoutes(text, 'routes.yaml', { pubsubTopic: 'projects/mqtt-ingest-test/topics/x', gcpProjectId: 'mqtt-ingest-test', bigqueryDataset: 'd', fileSink: false });
  if (!r.table) throw new Error(r.problems.map(describeProblem).join('\n'));
  return r.table.routes[0]!;
}

describe.runIf(run)('provision with a routes file, against the Pub/Sub emulator and the BigQuery test server', () => {
  let emu: PubSubEmulator;
  let bq: BigQueryServer;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'provision-routes-'));
  beforeAll(async () => {
    emu = await startPubSubEmulator();
    bq = await startBigQueryServer({ projectId: emu.projectId });
  });
  afterAll(async () => {
    await bq?.stop();
    await emu?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The environment of a node with these routes; topics and the dataset are named after `p`. */
  const env = (p: string, text: string, server: BigQueryServer = bq) => {
    const file = path.join(dir, `${p}.yaml`);
    writeFileSync(file, text);
    return baseEnv({
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: `${p}-raw`,
      PUBSUB_EMULATOR_HOST: emu.host,
      BIGQUERY_DATASET: `${p}_ds`,
      BIGQUERY_TABLE: 'raw_messages',
      BIGQUERY_API_ENDPOINT: server.url,
      ROUTES_FILE: file,
    });
  };
  const topicExists = async (name: string) => {
    const ps = new PubSub({ projectId: emu.projectId, apiEndpoint: emu.host, emulatorMode: true });
    try {
      return (await ps.topic(name).exists())[0];
    } finally {
      await ps.close();
    }
  };
  const topicLine = (state: string, p: string, t: string) => new RegExp(`^${state} +Pub/Sub topic projects/mqtt-ingest-test/topics/${p}-${t}$`, 'gm');

  it('--dry-run lists every route topic (PUBSUB_TOPIC once) and typed table it would create, and creates nothing', async () => {
    const r = await runCli(['provision', '--dry-run'], env('dry', routesText('dry')));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const t of ['raw', 'pressure', 'flow']) expect(r.stdout.match(topicLine('would create', 'dry', t)), t).toHaveLength(1);
    expect(r.stdout).toMatch(/^would create BigQuery dataset mqtt-ingest-test:dry_ds: in US$/m);
    expect(r.stdout).toMatch(/^would create BigQuery table mqtt-ingest-test:dry_ds\.raw_messages: with the raw schema \(docs\/bigquery\.md\)$/m);
    expect(r.stdout).toMatch(/^would create BigQuery table mqtt-ingest-test:dry_ds\.pressure: typed, for the rows of route pressure$/m);
    expect(r.stdout).toMatch(/^would create BigQuery table mqtt-ingest-test:dry_ds\.flow: typed, for the rows of route flow$/m);
    expect(r.stdout).not.toMatch(/dry_ds\.temp/);
    for (const t of ['raw', 'pressure', 'flow']) expect(await topicExists(`dry-${t}`)).toBe(false);
    expect(bq.datasets.has('dry_ds')).toBe(false);
  });

  it('creates every route topic and typed table, lists the permissions of each, and finds them all the next time', async () => {
    const text = routesText('make');
    const first = await runCli(['provision'], env('make', text));
    expect(first.code, first.stdout + first.stderr).toBe(0);
    for (const t of ['raw', 'pressure', 'flow']) {
      expect(first.stdout.match(topicLine('created', 'make', t)), t).toHaveLength(1);
      expect(await topicExists(`make-${t}`)).toBe(true);
      expect(first.stdout).toMatch(new RegExp(`^ {2}not checked pubsub\\.topics\\.publish on projects/mqtt-ingest-test/topics/make-${t} \\(`, 'm'));
    }
    expect(first.stdout).toMatch(/^created {6}BigQuery table mqtt-ingest-test:make_ds\.pressure: typed, for the rows of route pressure, day-partitioned on received_at$/m);
    expect(first.stdout).toMatch(/^created {6}BigQuery table mqtt-ingest-test:make_ds\.flow: typed, /m);
    expect(first.stdout).toMatch(/^created {6}BigQuery table mqtt-ingest-test:make_ds\.raw_messages: with the raw schema/m);
    for (const t of ['raw_messages', 'pressure', 'flow']) {
      expect(first.stdout).toMatch(new RegExp(`^ {2}not checked bigquery\\.tables\\.updateData on mqtt-ingest-test:make_ds\\.${t} \\(this endpoint does not implement`, 'm'));
    }
    const table = bq.tables.get('make_ds.pressure')!.resource;
    expect(table.schema.fields).toEqual(typedTableResource(pressureRoute(text)).schema.fields);
    expect(table.schema.fields.map((f) => `${f.name} ${f.type} ${f.mode}`).slice(3)).toEqual(['site STRING REQUIRED', 'sensor STRING REQUIRED', 'bar FLOAT REQUIRED']);
    expect(table.timePartitioning).toEqual({ type: 'DAY', field: 'received_at' });
    expect(table.clustering).toEqual({ fields: ['site', 'sensor'] });

    const second = await runCli(['provision'], env('make', text));
    expect(second.code, second.stdout + second.stderr).toBe(0);
    // Three topics, the dataset and three tables.
    expect(second.stdout.match(/^exists /gm)).toHaveLength(7);
    expect(second.stdout).toMatch(/^exists {7}BigQuery table mqtt-ingest-test:make_ds\.pressure: typed, for the rows of route pressure$/m);
    expect(second.stdout).not.toMatch(/^created/m);
  });

  it('gives a route table the NULLABLE column of a new optional field (would update, then updated); a REQUIRED difference differs, exit 1', async () => {
    const before = routesText('grow');
    bq.createDataset('grow_ds');
    bq.createTable('grow_ds', 'pressure', { ...typedTableResource(pressureRoute(before)) });
    const after = routesText('grow', { pressureFields: `${PRESSURE_FIELDS}      status: { from: payload.status, type: string, optional: true }\n` });

    const dry = await runCli(['provision', '--dry-run'], env('grow', after));
    expect(dry.code, dry.stdout + dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^would update BigQuery table mqtt-ingest-test:grow_ds\.pressure: would add the columns status \(STRING NULLABLE\)$/m);
    expect(bq.tables.get('grow_ds.pressure')!.resource.schema.fields.map((f) => f.name)).not.toContain('status');

    const grown = await runCli(['provision'], env('grow', after));
    expect(grown.code, grown.stdout + grown.stderr).toBe(0);
    expect(grown.stdout).toMatch(/^updated {6}BigQuery table mqtt-ingest-test:grow_ds\.pressure: added the columns status \(STRING NULLABLE\)$/m);
    expect(bq.tables.get('grow_ds.pressure')!.resource.schema.fields.map((f) => `${f.name} ${f.mode}`).at(-1)).toBe('status NULLABLE');
    expect((await runCli(['provision'], env('grow', after))).stdout).toMatch(/^exists {7}BigQuery table mqtt-ingest-test:grow_ds\.pressure: typed/m);

    const required = routesText('grow', { pressureFields: `${PRESSURE_FIELDS}      serial: { from: payload.serial, type: string }\n` });
    const r = await runCli(['provision'], env('grow', required));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^differs {6}BigQuery table mqtt-ingest-test:grow_ds\.pressure: column serial is missing \(want STRING REQUIRED; /m);
    expect(r.stdout).toMatch(/^NOT READY: 1 step\(s\) failed$/m);
    expect(bq.tables.get('grow_ds.pressure')!.resource.schema.fields.map((f) => f.name)).not.toContain('serial');
  });

  it('does not make the raw table when unmatched messages do not go there', async () => {
    const r = await runCli(['provision'], env('noraw', routesText('noraw', { unmatched: 'dead_letter' })));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toContain('raw_messages');
    expect([...bq.tables.keys()].filter((k) => k.startsWith('noraw_ds.')).sort()).toEqual(['noraw_ds.flow', 'noraw_ds.pressure']);
  });

  it("names a permission the node lacks on a route's table, and exits 1", async () => {
    const own = await startBigQueryServer({ projectId: emu.projectId });
    try {
      const granted = ['bigquery.tables.get', 'bigquery.tables.updateData'];
      own.grant('perm_ds.raw_messages', granted);
      own.grant('perm_ds.pressure', granted);
      own.grant('perm_ds.flow', ['bigquery.tables.get']);
      const r = await runCli(['provision'], env('perm', routesText('perm'), own));
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(r.stdout).toMatch(/^ {2}granted {5}bigquery\.tables\.updateData on mqtt-ingest-test:perm_ds\.pressure$/m);
      expect(r.stdout).toMatch(/^ {2}granted {5}bigquery\.tables\.get on mqtt-ingest-test:perm_ds\.flow$/m);
      expect(r.stdout).toMatch(/^ {2}missing {5}bigquery\.tables\.updateData on mqtt-ingest-test:perm_ds\.flow$/m);
      expect(r.stdout).toMatch(/^NOT READY: missing: bigquery\.tables\.updateData$/m);
    } finally {
      await own.stop();
    }
  });
});
