/**
 * The per-environment deploy descriptors: generated without drift from deploy/environments/, complete for App
 * Engine flexible, valid for the node (check-config on each environment's variables, the production rules in
 * PPRD and PRD), and the GKE overlays built and checked.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { APP_ENGINE_ONLY, checkGenerated, ENVIRONMENTS, generatedFiles, type DeployEnv } from '../src/deploy/render.js';
import { kustomizeBuild, type K8sObject } from './helpers/kustomize.js';
import { baseEnv, ROOT, runCli } from './helpers/node-process.js';

const DEPLOY = path.join(ROOT, 'deploy');
type AppYaml = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const appYaml = (env: DeployEnv): AppYaml => parse(readFileSync(path.join(DEPLOY, 'appengine', `${env}.yml`), 'utf8')) as AppYaml;
const temps: string[] = [];
afterAll(() => temps.forEach((t) => rmSync(t, { recursive: true, force: true })));

describe('no drift between the sources and the committed descriptors', () => {
  it('every committed generated file equals what deploy render produces', () => {
    const results = checkGenerated(ENVIRONMENTS, DEPLOY);
    expect(results).toHaveLength(6);
    expect(results.filter((r) => r.status !== 'ok')).toEqual([]);
  });

  it('`deploy render --check` passes here and fails, naming the file, on a hand-edited copy', async () => {
    expect((await runCli(['deploy', 'render', '--check'], baseEnv())).code).toBe(0);
    const copy = mkdtempSync(path.join(os.tmpdir(), 'deploy-drift-'));
    temps.push(copy);
    cpSync(DEPLOY, copy, { recursive: true });
    const prd = path.join(copy, 'appengine', 'prd.yml');
    writeFileSync(prd, readFileSync(prd, 'utf8').replace('cpu: 2', 'cpu: 4'));
    const r = await runCli(['deploy', 'render', '--check', '--dir', copy], baseEnv());
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('differs: deploy/appengine/prd.yml');
    expect(r.stderr).not.toContain('dev.yml');
    // --write puts it right again.
    expect((await runCli(['deploy', 'render', '--write', '--env', 'prd', '--dir', copy], baseEnv())).code).toBe(0);
    expect((await runCli(['deploy', 'render', '--check', '--dir', copy], baseEnv())).code).toBe(0);
  });

  it('`deploy render --env` prints one descriptor and refuses an unknown environment', async () => {
    const r = await runCli(['deploy', 'render', '--env', 'PPRD'], baseEnv());
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(generatedFiles('pprd', DEPLOY)[0]!.content);
    const bad = await runCli(['deploy', 'render', '--env', 'staging'], baseEnv());
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--env must be one of dev, pprd, prd');
  });
});

describe('the broker mode is chosen per environment', () => {
  it("each environment's own file names MQTT_BROKER_MODE (none left to auto or to the shared base), and the descriptors carry it", () => {
    const read = (f: string) => parse(readFileSync(path.join(ROOT, 'deploy', 'environments', f), 'utf8')) as { env?: Record<string, string> };
    expect(read('base.yml').env?.MQTT_BROKER_MODE).toBeUndefined();
    const modes = Object.fromEntries(ENVIRONMENTS.map((e) => [e, read(`${e}.yml`).env?.MQTT_BROKER_MODE]));
    expect(modes).toEqual({ dev: 'embedded', pprd: 'mosquitto', prd: 'mosquitto' });
    for (const e of ENVIRONMENTS) {
      const app = parse(readFileSync(path.join(ROOT, 'deploy', 'appengine', `${e}.yml`), 'utf8')) as { env_variables: Record<string, string> };
      expect(app.env_variables.MQTT_BROKER_MODE).toBe(modes[e]);
    }
  });
});

describe('App Engine flexible descriptors', () => {
  it.each(ENVIRONMENTS)('%s: custom runtime on flex, one instance, 10 GB disk, health checks on the node paths', (env) => {
    const y = appYaml(env);
    expect(y.runtime).toBe('custom');
    expect(y.env).toBe('flex');
    expect(y.manual_scaling).toEqual({ instances: 1 });
    expect(y.resources.disk_size_gb).toBe(10);
    // Flex allows 0.9 to 6.5 GB of memory per CPU.
    expect(y.resources.memory_gb / y.resources.cpu).toBeGreaterThanOrEqual(0.9);
    expect(y.resources.memory_gb / y.resources.cpu).toBeLessThanOrEqual(6.5);
    expect(y.liveness_check.path).toBe('/liveness_check');
    expect(y.readiness_check.path).toBe('/readiness_check');
    // Long enough for Mosquitto and a large spool to open before the checks can fail the instance.
    expect(y.liveness_check.initial_delay_sec).toBeGreaterThanOrEqual(300);
    expect(y.readiness_check.app_start_timeout_sec).toBeGreaterThanOrEqual(300);
    expect(y.liveness_check.timeout_sec).toBeLessThan(y.liveness_check.check_interval_sec);
  });

  it.each(ENVIRONMENTS)("%s: the environment's network, subnetwork, firewall tag, forwarded MQTT ports and service account", (env) => {
    const y = appYaml(env);
    const project = y.env_variables.GCP_PROJECT_ID as string;
    expect(project).toBe(`mqtt-ingest-${env}`);
    expect(y.network.name).toContain(env);
    expect(y.network.subnetwork_name).toContain(env);
    expect(y.network.instance_tag).toMatch(/^[a-z]([-a-z0-9]*[a-z0-9])?$/);
    // 1883 only where the plaintext listener is on (dev): pprd and prd forward TLS alone.
    expect(y.network.forwarded_ports).toEqual(env === 'dev' ? ['1883/tcp', '8883/tcp'] : ['8883/tcp']);
    expect(y.env_variables.MQTT_PLAINTEXT === 'false').toBe(env !== 'dev');
    // The environments run in europe-west1: a dataset the node or provision creates must not land in the US.
    expect(y.env_variables.BIGQUERY_LOCATION).toBe('europe-west1');
    expect(y.service_account).toMatch(new RegExp(`^[a-z][-a-z0-9]{4,28}[a-z0-9]@${project}\\.iam\\.gserviceaccount\\.com$`));
    expect(y.env_variables.APP_ENV).toBe(env);
    for (const k of ['PUBSUB_TOPIC', 'BIGQUERY_DATASET', 'BIGQUERY_TABLE', 'DATA_DIR', 'MQTT_CLIENT_ID']) expect(y.env_variables[k], k).toBeTruthy();
    // App Engine takes only strings in env_variables.
    for (const [k, v] of Object.entries(y.env_variables)) expect(typeof v, k).toBe('string');
  });

  it('PRD is larger than DEV and PPRD in CPU and memory; DEV and PPRD are alike', () => {
    const [dev, pprd, prd] = ENVIRONMENTS.map((e) => appYaml(e).resources);
    expect(dev).toEqual(pprd);
    expect(prd.cpu).toBeGreaterThan(dev.cpu);
    expect(prd.memory_gb).toBeGreaterThan(dev.memory_gb);
  });

  it('names secrets only as Secret Manager references of its own project, never as values', () => {
    for (const env of ENVIRONMENTS) {
      const vars = appYaml(env).env_variables as Record<string, string>;
      for (const k of ['MQTT_TLS_CERT', 'MQTT_TLS_KEY', 'MQTT_AUTH_FILE', 'MQTT_ACL_FILE']) {
        expect(vars[k], `${env} ${k}`).toMatch(new RegExp(`^sm://projects/mqtt-ingest-${env}/secrets/[a-z-]+/versions/latest$`));
      }
      expect(vars.MQTT_PASSWORD).toBeUndefined();
    }
  });
});

describe("check-config on each environment's variables", () => {
  // DATA_DIR (/data in the image) is checked to be writable or creatable: a folder of the test's own stands in.
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'descriptor-data-'));
  temps.push(dataDir);
  const envOf = (env: DeployEnv, change: Record<string, string | undefined> = {}) => {
    const vars = { ...(appYaml(env).env_variables as Record<string, string>), DATA_DIR: dataDir, ...change };
    return baseEnv(Object.fromEntries(Object.entries(vars).filter(([, v]) => v !== undefined)));
  };

  it.each(ENVIRONMENTS)('%s passes, offline, with the secrets as references', async (env) => {
    const r = await runCli(['check-config'], envOf(env));
    expect(r.stderr).not.toMatch(/invalid configuration/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^APP_ENV: ${env} # env$`, 'm'));
    expect(r.stdout).toMatch(/^MQTT_TLS_CERT: sm:\/\/projects\//m);
  });

  it('the production rules are what PPRD and PRD pass: without TLS, or with plaintext or anonymous access, they fail', async () => {
    for (const env of ['pprd', 'prd'] as const) {
      const r = await runCli(['check-config'], envOf(env, { MQTT_TLS_CERT: undefined, MQTT_TLS_KEY: undefined, MQTT_PLAINTEXT: 'true', MQTT_ALLOW_ANONYMOUS: 'true' }));
      expect(r.code, r.stderr).toBe(1);
      for (const key of ['MQTT_PLAINTEXT', 'MQTT_TLS_CERT', 'MQTT_ALLOW_ANONYMOUS']) expect(r.stderr).toContain(`${key}:`);
    }
    // The same changes are accepted in DEV: the rules are the production ones, not a general strictness.
    expect((await runCli(['check-config'], envOf('dev', { MQTT_TLS_CERT: undefined, MQTT_TLS_KEY: undefined, MQTT_ALLOW_ANONYMOUS: 'true' }))).code).toBe(0);
  });

  it('PPRD and PRD refuse to start without an explicit BIGQUERY_LOCATION while the BigQuery sink is on', async () => {
    for (const env of ['pprd', 'prd'] as const) {
      const r = await runCli(['check-config'], envOf(env, { BIGQUERY_LOCATION: undefined }));
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/BIGQUERY_LOCATION: must be set explicitly in p?prd/);
    }
    expect((await runCli(['check-config'], envOf('dev', { BIGQUERY_LOCATION: undefined }))).code).toBe(0);
  });

  it('a malformed reference fails check-config, naming the key', async () => {
    const r = await runCli(['check-config'], envOf('prd', { MQTT_TLS_KEY: 'sm://projects/mqtt-ingest-prd/secrets/mqtt-ingest-tls-key' }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('MQTT_TLS_KEY: must be a Secret Manager reference');
  });
});

describe('GKE overlays', () => {
  const built = Object.fromEntries(ENVIRONMENTS.map((e) => [e, kustomizeBuild(path.join(DEPLOY, 'kubernetes', 'overlays', e))])) as Record<DeployEnv, K8sObject[]>;
  const one = (env: DeployEnv, kind: string) => {
    const found = built[env].filter((o) => o.kind === kind);
    expect(found, `${env} ${kind}`).toHaveLength(1);
    return found[0]!;
  };

  // Replicas, anti-affinity and client ids per replica: test/deploy-replicas.test.ts.
  it.each(ENVIRONMENTS)('%s: a StatefulSet with a 10 GiB persistent volume on /data and the node probes', (env) => {
    const sts = one(env, 'StatefulSet');
    expect(sts.metadata.namespace).toBe('mqtt-ingest');
    const claim = sts.spec.volumeClaimTemplates.find((c: K8sObject) => c.metadata.name === 'data');
    expect(claim.spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(claim.spec.resources.requests.storage).toBe('10Gi');
    const pod = sts.spec.template.spec;
    const c = pod.containers.find((x: K8sObject) => x.name === 'mqtt-ingest');
    expect(c.volumeMounts).toContainEqual({ name: 'data', mountPath: '/data' });
    expect(c.startupProbe.httpGet.path).toBe('/liveness_check');
    expect(c.livenessProbe.httpGet.path).toBe('/liveness_check');
    expect(c.readinessProbe.httpGet.path).toBe('/readiness_check');
    expect(c.image).toMatch(/^europe-west1-docker\.pkg\.dev\/.+\/mqtt-ingest:set-by-deploy$/);
    expect(c.resources.requests.cpu).toBeTruthy();
    expect(c.resources.limits.memory).toBeTruthy();
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(sts.spec.template.metadata.labels.environment).toBe(env);
    // The selector matches the pods (and, being immutable, carries no environment label that could change).
    for (const [k, v] of Object.entries(sts.spec.selector.matchLabels)) expect(sts.spec.template.metadata.labels[k]).toBe(v);
  });

  it.each(ENVIRONMENTS)("%s: the container's variables are the App Engine descriptor's, so both platforms run one configuration", (env) => {
    const c = one(env, 'StatefulSet').spec.template.spec.containers[0];
    const vars = Object.fromEntries((c.env as { name: string; value: string }[]).map((e) => [e.name, e.value]));
    const app = { ...(appYaml(env).env_variables as Record<string, string>) };
    // Save MQTT_CLIENT_ID, which each replica derives from its pod name.
    expect(APP_ENGINE_ONLY.filter((k) => app[k] !== undefined)).toEqual(['MQTT_CLIENT_ID']);
    for (const k of APP_ENGINE_ONLY) delete app[k];
    expect(vars).toEqual(app);
  });

  it.each(ENVIRONMENTS)('%s: grace period above the drain time, Workload Identity instead of key files', (env) => {
    const sts = one(env, 'StatefulSet');
    const pod = sts.spec.template.spec;
    const vars = Object.fromEntries((pod.containers[0].env as { name: string; value: string }[]).map((e) => [e.name, e.value]));
    // SHUTDOWN_TIMEOUT_MS for in-flight batches, then Mosquitto's 5 s to save its database on SIGTERM.
    const drainSeconds = Number(vars.SHUTDOWN_TIMEOUT_MS) / 1000 + 5;
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(drainSeconds);
    const sa = one(env, 'ServiceAccount');
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(sa.metadata.annotations['iam.gke.io/gcp-service-account']).toBe(appYaml(env).service_account);
    expect(vars.GOOGLE_APPLICATION_CREDENTIALS).toBeUndefined();
    expect(JSON.stringify(built[env])).not.toMatch(/"kind":"Secret"|secretName|private_key/);
  });

  it.each(ENVIRONMENTS)('%s: a LoadBalancer for 8883 (and 1883 in dev only) to the pods, and a disruption budget over them', (env) => {
    const services = built[env].filter((o) => o.kind === 'Service');
    const lb = services.find((s) => s.spec.type === 'LoadBalancer')!;
    const ports = (lb.spec.ports as { port: number; targetPort: string }[]).map((p) => [p.port, p.targetPort]).sort();
    expect(ports).toEqual(env === 'dev' ? [[1883, 'mqtt'], [8883, 'mqtts']] : [[8883, 'mqtts']]);
    const sts = one(env, 'StatefulSet');
    const container = sts.spec.template.spec.containers[0];
    const named = Object.fromEntries((container.ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]));
    expect([named.mqtt, named.mqtts]).toEqual([1883, 8883]);
    const podLabels = sts.spec.template.metadata.labels;
    for (const s of services) for (const [k, v] of Object.entries(s.spec.selector)) expect(podLabels[k]).toBe(v);
    expect(services.find((s) => s.metadata.name === sts.spec.serviceName)?.spec.clusterIP).toBe('None');
    const pdb = one(env, 'PodDisruptionBudget');
    // One pod: no eviction takes it (the operator moves it). PRD's two: one at a time.
    expect(pdb.spec).toMatchObject(env === 'prd' ? { maxUnavailable: 1 } : { minAvailable: 1 });
    for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) expect(podLabels[k]).toBe(v);
  });

  it('PRD asks for more CPU and memory than DEV and PPRD', () => {
    const res = (env: DeployEnv) => one(env, 'StatefulSet').spec.template.spec.containers[0].resources;
    const gib = (q: string) => Number(q.replace(/Gi$/, ''));
    const cpu = (q: string) => (q.endsWith('m') ? Number(q.slice(0, -1)) / 1000 : Number(q));
    expect(res('dev')).toEqual(res('pprd'));
    expect(cpu(res('prd').requests.cpu)).toBeGreaterThan(cpu(res('dev').requests.cpu));
    expect(gib(res('prd').limits.memory)).toBeGreaterThan(gib(res('dev').limits.memory));
  });
});
