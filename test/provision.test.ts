/**
 * `mqtt-ingest provision`: against the real Pub/Sub emulator and the local BigQuery test server (dry run, create,
 * run again, a table with the wrong schema), and its permission check against a stand-in that answers
 * testIamPermissions per identity (the emulator answers UNIMPLEMENTED), impersonation included; against services
 * that accept connections and never answer; and without Google credentials.
 */
import { BigQuery } from '@google-cloud/bigquery';
import { PubSub, v1, type ClientConfig } from '@google-cloud/pubsub';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThroughClient, type AuthClient } from 'google-auth-library';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultFactories, provisionCommand, type ClientFactories } from '../src/cli/provision.js';
import { impersonatedAuth } from '../src/deploy/gcp-clients.js';
import { createSecretManagerClient } from '../src/config/secrets.js';
import { RAW_TABLE_FIELDS } from '../src/sinks/bigquery/schema.js';
import { startBigQueryServer, type BigQueryServer } from './helpers/bigquery-server.js';
import { startIamStandIn, type IamStandIn } from './helpers/iam-stand-in.js';
import { startSecretManagerServer } from './helpers/secret-manager-server.js';
import { baseEnv, runCli } from './helpers/node-process.js';
import { hasPubSubEmulator, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { startSilentServer, type SilentServer } from './helpers/silent-server.js';
import { serviceAvailable } from './helpers/skip.js';

const run = serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component');

describe.runIf(run)('provision against the Pub/Sub emulator and the BigQuery test server', () => {
  let emu: PubSubEmulator;
  let bq: BigQueryServer;
  beforeAll(async () => {
    emu = await startPubSubEmulator();
    bq = await startBigQueryServer({ projectId: emu.projectId });
  });
  afterAll(async () => {
    await bq?.stop();
    await emu?.stop();
  });
  const env = (extra: Record<string, string> = {}) =>
    baseEnv({
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: 'prov-raw',
      PUBSUB_EMULATOR_HOST: emu.host,
      BIGQUERY_DATASET: 'mqtt_ingest',
      BIGQUERY_TABLE: 'raw_messages',
      BIGQUERY_API_ENDPOINT: bq.url,
      ...extra,
    });
  const topicExists = async (name: string) => {
    const ps = new PubSub({ projectId: emu.projectId, apiEndpoint: emu.host, emulatorMode: true });
    try {
      return (await ps.topic(name).exists())[0];
    } finally {
      await ps.close();
    }
  };

  it('--dry-run reports what it would create and creates nothing', async () => {
    const r = await runCli(['provision', '--dry-run', '--verification-subscription', 'prov-smoke'], env());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('dry run: nothing is created');
    expect(r.stdout).toMatch(/^would create Pub\/Sub topic projects\/mqtt-ingest-test\/topics\/prov-raw$/m);
    expect(r.stdout).toMatch(/^would create Pub\/Sub subscription projects\/mqtt-ingest-test\/subscriptions\/prov-smoke/m);
    expect(r.stdout).toMatch(/^would create BigQuery dataset mqtt-ingest-test:mqtt_ingest: in US$/m);
    expect(r.stdout).toMatch(/^would create BigQuery table mqtt-ingest-test:mqtt_ingest\.raw_messages/m);
    expect(await topicExists('prov-raw')).toBe(false);
    expect(bq.datasets.size).toBe(0);
  });

  it('creates the topic, the filtered verification subscription, the dataset and the raw table, then finds them all', async () => {
    const first = await runCli(['provision', '--verification-subscription', 'prov-smoke'], env());
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^created {6}Pub\/Sub topic projects\/mqtt-ingest-test\/topics\/prov-raw$/m);
    expect(first.stdout).toMatch(/^created {6}Pub\/Sub subscription .*prov-smoke \(smoke test, filter hasPrefix\(attributes\.mqtt_topic, "mqtt-ingest\/smoke\/"\)\)$/m);
    expect(first.stdout).toMatch(/^created {6}BigQuery dataset mqtt-ingest-test:mqtt_ingest: in US$/m);
    expect(first.stdout).toMatch(/^created {6}BigQuery table mqtt-ingest-test:mqtt_ingest\.raw_messages/m);
    // The emulator does not implement testIamPermissions: said so, and not a failure.
    expect(first.stdout).toMatch(/^ {2}not checked pubsub\.topics\.publish on projects\/mqtt-ingest-test\/topics\/prov-raw \(this endpoint does not implement testIamPermissions/m);
    expect(first.stdout).toMatch(/^done; \d+ permission\(s\) could not be checked here$/m);
    // The summary line on stderr, after the report (off a terminal there is no live line).
    expect(first.stderr).toMatch(/^provision: 4 resources and 3 permissions checked in \d+(\.\d)? s: ready\n$/);
    expect(await topicExists('prov-raw')).toBe(true);
    const table = bq.tables.get('mqtt_ingest.raw_messages')!;
    expect(table.resource.schema.fields.map((f) => [f.name, f.type, f.mode])).toEqual(RAW_TABLE_FIELDS.map((f) => [f.name, f.type, f.mode]));
    expect(table.resource.timePartitioning).toMatchObject({ type: 'DAY', field: 'received_at' });

    const second = await runCli(['provision', '--verification-subscription', 'prov-smoke'], env());
    expect(second.code).toBe(0);
    expect(second.stdout.match(/^exists /gm)).toHaveLength(4);
    expect(second.stdout).not.toMatch(/^created/m);
  });

  it('makes the verification subscription on the topic with the smoke filter (the emulator stores filters but does not apply them)', async () => {
    const ps = new PubSub({ projectId: emu.projectId, apiEndpoint: emu.host, emulatorMode: true });
    try {
      const [meta] = await ps.subscription('prov-smoke').getMetadata();
      expect(meta.topic).toBe(`projects/${emu.projectId}/topics/prov-raw`);
      expect(meta.filter).toBe('hasPrefix(attributes.mqtt_topic, "mqtt-ingest/smoke/")');
    } finally {
      await ps.close();
    }
    // A subscription made by hand without the filter is reported, not silently used.
    const ps2 = new PubSub({ projectId: emu.projectId, apiEndpoint: emu.host, emulatorMode: true });
    await ps2.topic('prov-raw').createSubscription('prov-unfiltered');
    await ps2.close();
    const r = await runCli(['provision', '--verification-subscription', 'prov-unfiltered'], env());
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^differs {6}Pub\/Sub subscription .*prov-unfiltered .*: its filter is ""; delete it and run provision again$/m);
  });

  it('reports a table whose columns do not fit the raw schema, and exits 1', async () => {
    bq.createDataset('legacy');
    bq.createTable('legacy', 'raw', { schema: { fields: [{ name: 'message_id', type: 'INTEGER', mode: 'REQUIRED' }] } } as never);
    const r = await runCli(['provision'], env({ BIGQUERY_DATASET: 'legacy', BIGQUERY_TABLE: 'raw' }));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^differs {6}BigQuery table mqtt-ingest-test:legacy\.raw: column message_id is INTEGER, want STRING; column topic is missing/m);
    expect(r.stdout).toMatch(/^NOT READY: 1 step\(s\) failed$/m);
  });

  it("--env takes an environment's deployed variables (its project, topic and secret references) over the shell's", async () => {
    const sm = await startSecretManagerServer(
      Object.fromEntries(['mqtt-ingest-tls-cert', 'mqtt-ingest-tls-key', 'mqtt-ingest-passwd', 'mqtt-ingest-acl'].map((s) => [`projects/mqtt-ingest-dev/secrets/${s}`, { versions: { 1: 'x' } }])),
    );
    try {
      const r = await runCli(
        ['provision', '--env', 'dev', '--dry-run'],
        baseEnv({ GCP_PROJECT_ID: 'some-other-project', PUBSUB_EMULATOR_HOST: emu.host, BIGQUERY_API_ENDPOINT: bq.url, SECRET_MANAGER_API_ENDPOINT: sm.url }),
      );
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^would create Pub\/Sub topic projects\/mqtt-ingest-dev\/topics\/mqtt-ingest-raw$/m);
      expect(r.stdout).toMatch(/^would create BigQuery table mqtt-ingest-dev:mqtt_ingest\.raw_messages/m);
      expect(r.stdout.match(/^ {2}granted {5}secretmanager\.versions\.access on projects\/mqtt-ingest-dev\/secrets\//gm)).toHaveLength(4);
      expect(r.stdout).not.toContain('some-other-project');
    } finally {
      await sm.stop();
    }
    const bad = await runCli(['provision', '--env', 'staging'], baseEnv({}));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--env must be one of dev, pprd, prd');
  });

  it('refuses bad usage: nothing configured, or a verification subscription without a topic', async () => {
    const none = await runCli(['provision'], baseEnv({}));
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('set GCP_PROJECT_ID');
    const noTopic = await runCli(['provision', '--verification-subscription', 's'], baseEnv({ GCP_PROJECT_ID: emu.projectId }));
    expect(noTopic.code).toBe(2);
    expect(noTopic.stderr).toContain('--verification-subscription needs PUBSUB_TOPIC');
  });
});

describe('the permission check, against a stand-in that answers testIamPermissions', () => {
  const NODE_SA = 'mqtt-ingest-node@mqtt-ingest-prd.iam.gserviceaccount.com';
  const TOPIC = 'projects/mqtt-ingest-prd/topics/mqtt-ingest-raw';
  const TABLE = 'mqtt-ingest-prd:mqtt_ingest.raw_messages';
  const SECRET = 'projects/mqtt-ingest-prd/secrets/mqtt-ingest-passwd';
  let iam: IamStandIn;
  beforeAll(async () => {
    iam = await startIamStandIn({
      // The node's account lacks the table write and the secret; the operator (caller) has none of these.
      [NODE_SA]: [`pubsub.topics.publish ${TOPIC}`, `bigquery.tables.get ${TABLE}`],
    });
  });
  afterAll(async () => iam?.stop());

  const factories = (): ClientFactories => ({
    pubsub: (projectId, _c, auth) =>
      // The REST transport (`fallback`) is a client option the library's ClientConfig type does not list, and
      // the library's copy of google-auth-library types the same AuthClient apart from ours.
      new PubSub({ projectId, fallback: true, apiEndpoint: iam.host, protocol: 'http', authClient: auth ?? new PassThroughClient() } as unknown as ClientConfig),
    bigquery: (projectId, _c, auth) => {
      const client = new BigQuery({ projectId, apiEndpoint: iam.url, authClient: (auth ?? new PassThroughClient()) as never });
      client.baseUrl = `${iam.url}/bigquery/v2`;
      return client;
    },
    secretManager: (_c, auth) => createSecretManagerClient(iam.url, auth),
    impersonate: (sa) => impersonatedAuth(sa, { endpoint: iam.url, sourceClient: new PassThroughClient() as unknown as AuthClient }),
    // The stand-in takes the caller's requests without credentials.
    credentials: () => Promise.resolve(undefined),
  });
  const env = baseEnv({
    GCP_PROJECT_ID: 'mqtt-ingest-prd',
    PUBSUB_TOPIC: 'mqtt-ingest-raw',
    BIGQUERY_DATASET: 'mqtt_ingest',
    BIGQUERY_TABLE: 'raw_messages',
    MQTT_AUTH_FILE: `sm://${SECRET}/versions/latest`,
  });
  const io = () => {
    const out = { stdout: '', stderr: '' };
    return { out, io: { stdout: { write: (s: string) => ((out.stdout += s), true) }, stderr: { write: (s: string) => ((out.stderr += s), true) } } };
  };

  it("as the node's service account (impersonated): names each missing permission and exits 1", async () => {
    const { out, io: streams } = io();
    const code = await provisionCommand({ smokeTopicPrefix: 'mqtt-ingest/smoke', serviceAccount: NODE_SA }, env, streams, factories());
    expect(code).toBe(1);
    expect(out.stdout).toContain(`permissions of ${NODE_SA}:`);
    expect(out.stdout).toMatch(new RegExp(`^ {2}granted {5}pubsub\\.topics\\.publish on ${TOPIC}$`, 'm'));
    expect(out.stdout).toMatch(new RegExp(`^ {2}granted {5}bigquery\\.tables\\.get on ${TABLE}$`, 'm'));
    expect(out.stdout).toMatch(new RegExp(`^ {2}missing {5}bigquery\\.tables\\.updateData on ${TABLE}$`, 'm'));
    expect(out.stdout).toMatch(new RegExp(`^ {2}missing {5}secretmanager\\.versions\\.access on ${SECRET}$`, 'm'));
    expect(out.stdout).toMatch(/^NOT READY: missing: bigquery\.tables\.updateData, secretmanager\.versions\.access$/m);
    // The resources were looked up as the caller; the check was asked as the node's account.
    expect(iam.requests).toContain(`POST /v1/projects/-/serviceAccounts/${NODE_SA}:generateAccessToken caller`);
    expect(iam.requests).toContain(`GET /v1/${TOPIC} caller`);
    expect(iam.requests).toContain(`POST /v1/${TOPIC}:testIamPermissions ${NODE_SA}`);
    expect(iam.requests).toContain(`POST /v1/${SECRET}:testIamPermissions ${NODE_SA}`);
  });

  it('as the caller (no --service-account): the same resources, every permission missing', async () => {
    const { out, io: streams } = io();
    const code = await provisionCommand({ smokeTopicPrefix: 'mqtt-ingest/smoke' }, env, streams, factories());
    expect(code).toBe(1);
    expect(out.stdout).toContain('permissions of the caller (Application Default Credentials):');
    expect(out.stdout.match(/^ {2}missing /gm)).toHaveLength(4);
    expect(out.stdout).toMatch(/^exists {7}Pub\/Sub topic /m);
  });

  it('passes once the missing permissions are granted', async () => {
    await iam.stop();
    iam = await startIamStandIn({
      [NODE_SA]: [`pubsub.topics.publish ${TOPIC}`, `bigquery.tables.get ${TABLE}`, `bigquery.tables.updateData ${TABLE}`, `secretmanager.versions.access ${SECRET}`],
    });
    const { out, io: streams } = io();
    const code = await provisionCommand({ smokeTopicPrefix: 'mqtt-ingest/smoke', serviceAccount: NODE_SA }, env, streams, factories());
    expect(out.stdout).toMatch(/^done$/m);
    expect(code).toBe(0);
  });

  it('uses the configuration endpoints by default', () => {
    expect(Object.keys(defaultFactories).sort()).toEqual(['bigquery', 'credentials', 'impersonate', 'pubsub', 'secretManager']);
  });
});

describe('provision against services that do not answer, and without credentials', () => {
  let silent: SilentServer;
  const home = mkdtempSync(path.join(os.tmpdir(), 'provision-home-'));
  beforeAll(async () => {
    silent = await startSilentServer();
  });
  afterAll(async () => {
    await silent?.stop();
    rmSync(home, { recursive: true, force: true });
  });
  const stackTrace = /^\s+at |^Error:|node:internal|Node\.js v\d/m;

  it('says within the interval what it still waits for, then fails each step naming the service', async () => {
    const started = Date.now();
    const r = await runCli(
      ['provision', '--dry-run', '--verification-subscription', 'prov-smoke', '--timeout', '3'],
      baseEnv({
        GCP_PROJECT_ID: 'mqtt-ingest-test',
        PUBSUB_TOPIC: 'prov-raw',
        PUBSUB_EMULATOR_HOST: silent.host,
        BIGQUERY_DATASET: 'mqtt_ingest',
        BIGQUERY_TABLE: 'raw_messages',
        BIGQUERY_API_ENDPOINT: `http://${silent.host}`,
        // 15 s in use; 1 s here, so that the test sees several notices before the 3 s --timeout.
        MQTTINGEST_WAIT_NOTICE_MS: '1000',
      }),
    );
    const elapsed = Date.now() - started;
    expect(r.code, r.stdout + r.stderr).toBe(1);
    const host = silent.host.replace(/\./g, '\\.');
    for (const n of [1, 2]) {
      expect(r.stderr).toMatch(new RegExp(`^provision: still waiting for the Pub/Sub emulator at ${host} \\(projects/mqtt-ingest-test/topics/prov-raw: get\\) after ${n} s…$`, 'm'));
      expect(r.stderr).toMatch(new RegExp(`^provision: still waiting for BigQuery at http://${host} \\(dataset mqtt-ingest-test:mqtt_ingest: get\\) after ${n} s…$`, 'm'));
    }
    expect(r.stdout).toMatch(
      new RegExp(`^failed {7}Pub/Sub topic projects/mqtt-ingest-test/topics/prov-raw: the Pub/Sub emulator at ${host} did not answer within 3 s \\(projects/mqtt-ingest-test/topics/prov-raw: get\\)`, 'm'),
    );
    // The rest of Pub/Sub is not asked (each would wait as long again).
    expect(r.stdout).toMatch(new RegExp(`^failed {7}Pub/Sub subscription projects/mqtt-ingest-test/subscriptions/prov-smoke .*: not asked: the Pub/Sub emulator at ${host} did not answer an earlier call`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^failed {7}BigQuery dataset mqtt-ingest-test:mqtt_ingest: BigQuery at http://${host} did not answer within 3 s \\(dataset mqtt-ingest-test:mqtt_ingest: get\\)$`, 'm'));
    expect(r.stdout).toMatch(/^ {2}not checked pubsub\.topics\.publish on .*not asked: the Pub\/Sub emulator/m);
    expect(r.stdout).toMatch(/^NOT READY: 3 step\(s\) failed$/m);
    expect(r.stderr).not.toMatch(stackTrace);
    // It asked the silent server (both clients connected), and exited at its own deadlines, not the libraries'
    // (a minute and more each: BigQuery's client retries without end in sight).
    expect(silent.connections()).toBeGreaterThanOrEqual(2);
    expect(elapsed).toBeLessThan(20_000);
  });

  it('without Application Default Credentials: one message with the fix, exit 1', async () => {
    // No ADC file under HOME, no metadata server (METADATA_SERVER_DETECTION=none in baseEnv), no key file.
    const r = await runCli(
      ['provision', '--dry-run'],
      baseEnv({ HOME: home, GCP_PROJECT_ID: 'mqtt-ingest-prd', PUBSUB_TOPIC: 'mqtt-ingest-raw', BIGQUERY_DATASET: 'mqtt_ingest', BIGQUERY_TABLE: 'raw_messages' }),
    );
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      'provision: no Google credentials found (Application Default Credentials), needed for Pub/Sub and BigQuery. ' +
        'To fix: run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, ' +
        'or run where a service account is attached (Compute Engine, GKE, App Engine, Cloud Run, Cloud Shell)\n',
    );
  });

  it('with GOOGLE_APPLICATION_CREDENTIALS naming a missing file: one message naming it, with the fix, exit 1', async () => {
    const missing = path.join(home, 'no-such-key.json');
    const r = await runCli(['provision'], baseEnv({ HOME: home, GOOGLE_APPLICATION_CREDENTIALS: missing, GCP_PROJECT_ID: 'mqtt-ingest-prd', PUBSUB_TOPIC: 'mqtt-ingest-raw' }));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(missing);
    expect(r.stderr).toContain('gcloud auth application-default login');
    expect(r.stderr).not.toMatch(stackTrace);
    // A key file that looks like one but that Google's library cannot use (no client_email, no private_key).
    const incomplete = path.join(home, 'incomplete-key.json');
    writeFileSync(incomplete, JSON.stringify({ type: 'service_account', project_id: 'mqtt-ingest-prd' }));
    const bad = await runCli(['provision'], baseEnv({ HOME: home, GOOGLE_APPLICATION_CREDENTIALS: incomplete, GCP_PROJECT_ID: 'mqtt-ingest-prd', PUBSUB_TOPIC: 'mqtt-ingest-raw' }));
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(bad.stderr).toMatch(new RegExp(`^provision: GOOGLE_APPLICATION_CREDENTIALS names ${incomplete.replace(/[.]/g, '\\.')}, which gives no usable Google credentials \\(.*\\), needed for Pub/Sub\\. To fix: set GOOGLE_APPLICATION_CREDENTIALS to a readable service account key file, or unset it and run \`gcloud auth application-default login\``));
    expect(bad.stderr).not.toMatch(stackTrace);
  });
});
