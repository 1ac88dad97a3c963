/**
 * More than one node per environment: the GKE overlays as built give PRD two replicas (DEV and PPRD one), each
 * on its own VM, with its own persistent volume and its own MQTT client id, under a disruption budget that lets
 * a drain take one at a time; App Engine stays on one instance.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../src/config/load.js';
import { ENVIRONMENTS, type DeployEnv } from '../src/deploy/render.js';
import { deriveClientId } from '../src/intake/config.js';
import { kustomizeBuild, type K8sObject } from './helpers/kustomize.js';
import { baseEnv, ROOT, runCli } from './helpers/node-process.js';

const DEPLOY = path.join(ROOT, 'deploy');
const REPLICAS: Record<DeployEnv, number> = { dev: 1, pprd: 1, prd: 2 };
const built = Object.fromEntries(ENVIRONMENTS.map((e) => [e, kustomizeBuild(path.join(DEPLOY, 'kubernetes', 'overlays', e))])) as Record<DeployEnv, K8sObject[]>;
const one = (env: DeployEnv, kind: string): K8sObject => {
  const found = built[env].filter((o) => o.kind === kind);
  expect(found, `${env} ${kind}`).toHaveLength(1);
  return found[0]!;
};
const container = (env: DeployEnv): K8sObject => one(env, 'StatefulSet').spec.template.spec.containers.find((c: K8sObject) => c.name === 'mqtt-ingest');
const containerVars = (env: DeployEnv): Record<string, string> =>
  Object.fromEntries((container(env).env as { name: string; value: string }[]).map((e) => [e.name, e.value]));
/** The pods a StatefulSet makes: `<name>-<ordinal>`, which Kubernetes also gives them as host name. */
const podNames = (sts: K8sObject): string[] => Array.from({ length: sts.spec.replicas as number }, (_, i) => `${sts.metadata.name}-${i}`);
const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
const temps: string[] = [];
afterAll(() => temps.forEach((t) => rmSync(t, { recursive: true, force: true })));

/**
 * How many pods the eviction API lets go at once (the disruption controller's arithmetic, for whole numbers):
 * with `healthy` ready pods of `expected`.
 */
function disruptionsAllowed(pdb: K8sObject, expected: number, healthy: number): number {
  const { minAvailable, maxUnavailable } = pdb.spec as { minAvailable?: unknown; maxUnavailable?: unknown };
  if ((minAvailable === undefined) === (maxUnavailable === undefined)) throw new Error('a budget sets exactly one of minAvailable and maxUnavailable');
  const n = (minAvailable ?? maxUnavailable) as number;
  if (!Number.isInteger(n)) throw new Error(`only whole numbers are modelled here, got ${JSON.stringify(n)}`);
  const desiredHealthy = minAvailable !== undefined ? n : Math.max(0, expected - n);
  return Math.max(0, healthy - desiredHealthy);
}

describe('replicas per overlay', () => {
  it.each(ENVIRONMENTS)('%s renders the StatefulSet with its replicas, started and updated one pod at a time', (env) => {
    const sts = one(env, 'StatefulSet');
    expect(sts.spec.replicas).toBe(REPLICAS[env]);
    expect(sts.spec.podManagementPolicy).toBe('OrderedReady');
    expect(sts.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { partition: 0, maxUnavailable: 1 } });
    expect(sts.spec.minReadySeconds).toBeGreaterThan(0);
  });

  it.each(ENVIRONMENTS)('%s: one persistent volume per replica, kept when the StatefulSet is scaled down or deleted', (env) => {
    const sts = one(env, 'StatefulSet');
    const pod = sts.spec.template.spec;
    const [claim, ...others] = sts.spec.volumeClaimTemplates as K8sObject[];
    expect(others).toEqual([]);
    expect(claim!.spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(container(env).volumeMounts).toContainEqual({ name: claim!.metadata.name, mountPath: containerVars(env).DATA_DIR });
    // A pod volume of the same name would win over the claim and could be shared: there is none.
    expect((pod.volumes as K8sObject[]).map((v) => v.name)).not.toContain(claim!.metadata.name);
    // Kubernetes names each replica's claim <template>-<pod>: one each, none shared.
    const claims = podNames(sts).map((p) => `${claim!.metadata.name}-${p}`);
    expect(new Set(claims).size).toBe(REPLICAS[env]);
    expect(sts.spec.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Retain', whenScaled: 'Retain' });
  });
});

describe('PRD: two replicas that fail and move separately', () => {
  const sts = one('prd', 'StatefulSet');
  const pod = sts.spec.template.spec;
  const podLabels = sts.spec.template.metadata.labels as Record<string, string>;

  it('never places two replicas on one VM (required anti-affinity by host name) and spreads them across zones', () => {
    const terms = pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution as K8sObject[];
    expect(terms).toHaveLength(1);
    expect(terms[0]!.topologyKey).toBe('kubernetes.io/hostname');
    // The term must select the replicas themselves, or it keeps nothing apart.
    expect(matches(terms[0]!.labelSelector.matchLabels, podLabels)).toBe(true);
    const [spread, ...more] = pod.topologySpreadConstraints as K8sObject[];
    expect(more).toEqual([]);
    expect(spread).toMatchObject({ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway' });
    expect(matches(spread!.labelSelector.matchLabels, podLabels)).toBe(true);
  });

  it('the disruption budget lets a drain take one replica while both are ready, and none while one is not', () => {
    const pdb = one('prd', 'PodDisruptionBudget');
    expect(pdb.spec).toMatchObject({ maxUnavailable: 1 });
    expect(pdb.spec.minAvailable).toBeUndefined();
    expect(matches(pdb.spec.selector.matchLabels, podLabels)).toBe(true);
    expect(disruptionsAllowed(pdb, 2, 2)).toBe(1);
    expect(disruptionsAllowed(pdb, 2, 1)).toBe(0);
  });

  it("DEV and PPRD keep their single pod's budget: no eviction moves it, the operator does", () => {
    for (const env of ['dev', 'pprd'] as const) {
      const pdb = one(env, 'PodDisruptionBudget');
      expect(pdb.spec.minAvailable, env).toBe(1);
      expect(pdb.spec.maxUnavailable, env).toBeUndefined();
      expect(disruptionsAllowed(pdb, 1, 1), env).toBe(0);
    }
  });
});

describe('a stable, distinct MQTT client id per replica', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'replicas-data-'));
  temps.push(dataDir);

  it.each(ENVIRONMENTS)('%s: nothing in the manifests fixes the client id or changes the host name from the pod name', (env) => {
    const c = container(env);
    expect((c.env as { name: string }[]).map((e) => e.name)).not.toContain('MQTT_CLIENT_ID');
    expect(c.envFrom).toBeUndefined();
    expect(built[env].filter((o) => o.kind === 'ConfigMap' || o.kind === 'Secret')).toEqual([]);
    const pod = one(env, 'StatefulSet').spec.template.spec;
    for (const k of ['hostname', 'setHostnameAsFQDN', 'hostNetwork']) expect(pod[k], k).toBeUndefined();
  });

  it.each(ENVIRONMENTS)("%s: each pod's client id, as the node derives it from the pod's host name, is its own", (env) => {
    const sts = one(env, 'StatefulSet');
    const vars = { ...containerVars(env), DATA_DIR: dataDir };
    const ids = podNames(sts).map((hostname) => {
      const { config } = loadConfig({ env: vars, hostname });
      expect(config.MQTT_CLIENT_ID).toBe(deriveClientId(hostname, env));
      // Stable: the same pod name after a restart or a reschedule gives the same id.
      expect(loadConfig({ env: vars, hostname }).config.MQTT_CLIENT_ID).toBe(config.MQTT_CLIENT_ID);
      return config.MQTT_CLIENT_ID;
    });
    expect(ids).toEqual(podNames(sts).map((p) => `mqtt-ingest-${p}-${env}`));
    expect(new Set(ids).size).toBe(REPLICAS[env]);
  });

  it("`check-config` on PRD's container variables derives the id from the host it runs on", async () => {
    const r = await runCli(['check-config'], baseEnv({ ...containerVars('prd'), DATA_DIR: dataDir }));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`MQTT_CLIENT_ID: ${deriveClientId(os.hostname(), 'prd')}`);
  });

  it('the App Engine descriptors keep an explicit client id, which only they carry', () => {
    for (const env of ENVIRONMENTS) {
      const app = parse(readFileSync(path.join(DEPLOY, 'appengine', `${env}.yml`), 'utf8')) as { env_variables: Record<string, string> };
      // An instance's host name changes with every new instance: a derived id would lose the session each time.
      expect(app.env_variables.MQTT_CLIENT_ID, env).toBe(`mqtt-ingest-${env}`);
      expect(Object.keys(containerVars(env)).filter((k) => !(k in app.env_variables))).toEqual([]);
    }
  });
});

describe('App Engine stays on one instance', () => {
  it.each(ENVIRONMENTS)('%s: manual scaling with exactly one instance, and no other scaling', (env) => {
    const app = parse(readFileSync(path.join(DEPLOY, 'appengine', `${env}.yml`), 'utf8')) as Record<string, unknown>;
    expect(app.manual_scaling).toEqual({ instances: 1 });
    expect(app.automatic_scaling).toBeUndefined();
    expect(app.basic_scaling).toBeUndefined();
  });
});
