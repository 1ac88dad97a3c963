/**
 * deploy/monitoring/alerts.yml is valid for Prometheus (`promtool check rules`), behaves as its unit tests
 * say (`promtool test rules alerts.test.yml`: every alert firing and not firing), and reads only metrics the
 * node defines.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { kustomizeBuild } from './helpers/kustomize.js';
import { ROOT } from './helpers/node-process.js';
import { hasPromtool, runPromtool } from './helpers/prometheus.js';
import { definedMetricNames, metricNames } from './helpers/promql-names.js';
import { serviceAvailable } from './helpers/skip.js';

const MONITORING = path.join(ROOT, 'deploy', 'monitoring');
type Rule = { alert: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
const rules = (parse(readFileSync(path.join(MONITORING, 'alerts.yml'), 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const temps: string[] = [];
afterAll(() => temps.forEach((t) => rmSync(t, { recursive: true, force: true })));

describe('alert rules, without Prometheus', () => {
  it('every rule has a severity, a summary, a description and a runbook in docs/operations.md', () => {
    const docs = readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8');
    expect(rules.length).toBeGreaterThanOrEqual(14);
    for (const r of rules) {
      expect(['page', 'ticket'], r.alert).toContain(r.labels?.severity);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
      expect(r.annotations?.description, r.alert).toBeTruthy();
      expect(r.annotations?.runbook_url, r.alert).toBe('docs/operations.md#runbook');
      // The Runbook or the alert index of "Alerts and dashboards as code" names each alert.
      expect(docs, r.alert).toContain(`\`${r.alert}\``);
    }
    expect(docs).toContain('\n## Runbook\n');
  });

  it('every metric an expression reads is defined in src/', () => {
    const defined = definedMetricNames(path.join(ROOT, 'src'));
    expect(defined.has('mqtt_ingest_spool_bytes')).toBe(true);
    const unknown = rules.flatMap((r) => metricNames(r.expr).map((m) => `${r.alert}: ${m}`)).filter((m) => {
      const name = m.split(': ')[1]!;
      // prom-client's default process metrics carry the node's prefix but no file names them.
      if (name.startsWith('mqtt_ingest_process_')) return false;
      return !defined.has(name);
    });
    expect(unknown).toEqual([]);
  });
});

describe('the PodMonitoring for Google Managed Prometheus', () => {
  it.each(['dev', 'pprd', 'prd'])('%s: scrapes /metrics on the port the headless Service targets, of the StatefulSet\'s pods', (env) => {
    const built = kustomizeBuild(path.join(ROOT, 'deploy', 'kubernetes', 'overlays', env));
    const [pm, ...more] = built.filter((o) => o.kind === 'PodMonitoring');
    expect(more).toEqual([]);
    expect(pm.apiVersion).toBe('monitoring.googleapis.com/v1');
    expect(pm.metadata.namespace).toBe('mqtt-ingest');
    const sts = built.find((o) => o.kind === 'StatefulSet')!;
    const headless = built.find((o) => o.kind === 'Service' && o.spec.clusterIP === 'None')!;
    const podLabels = sts.spec.template.metadata.labels as Record<string, string>;
    for (const [k, v] of Object.entries(pm.spec.selector.matchLabels as Record<string, string>)) expect(podLabels[k], k).toBe(v);
    expect(pm.spec.selector.matchLabels).toEqual(headless.spec.selector);
    const [endpoint, ...others] = pm.spec.endpoints as { port: string; path: string }[];
    expect(others).toEqual([]);
    expect(endpoint!.path).toBe('/metrics');
    expect(endpoint!.port).toBe(headless.spec.ports[0].targetPort);
    const container = sts.spec.template.spec.containers.find((c: { name: string }) => c.name === 'mqtt-ingest');
    const port = container.ports.find((p: { name: string }) => p.name === endpoint!.port);
    // The port the node serves /metrics on (PORT, 8080 unless an overlay says otherwise).
    expect(port?.containerPort).toBe(8080);
  });
});

const run = serviceAvailable('promtool', hasPromtool(), 'apt-get install prometheus');

describe.runIf(run)('alert rules under promtool', () => {
  it('`promtool check rules alerts.yml` passes', async () => {
    const r = await runPromtool(['check', 'rules', 'alerts.yml'], MONITORING);
    expect(r.output).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(r.code, r.output).toBe(0);
  });

  it('`promtool test rules alerts.test.yml` passes, with a case for every alert', async () => {
    const r = await runPromtool(['test', 'rules', 'alerts.test.yml'], MONITORING);
    expect(r.code, r.output).toBe(0);
    expect(r.output).toContain('SUCCESS');
    const tests = parse(readFileSync(path.join(MONITORING, 'alerts.test.yml'), 'utf8')) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test);
    for (const rule of rules) {
      const own = cases.filter((c) => c.alertname === rule.alert);
      expect(own.some((c) => c.exp_alerts.length > 0), `${rule.alert} firing`).toBe(true);
      expect(own.some((c) => c.exp_alerts.length === 0), `${rule.alert} not firing`).toBe(true);
    }
  });

  it('the unit tests fail on a rule with another threshold, and check fails on a broken expression', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-rules-'));
    temps.push(dir);
    const alerts = readFileSync(path.join(MONITORING, 'alerts.yml'), 'utf8');
    copyFileSync(path.join(MONITORING, 'alerts.test.yml'), path.join(dir, 'alerts.test.yml'));
    writeFileSync(path.join(dir, 'alerts.yml'), alerts.replace('mqtt_ingest_spool_oldest_age_seconds > 600', 'mqtt_ingest_spool_oldest_age_seconds > 6000'));
    const changed = await runPromtool(['test', 'rules', 'alerts.test.yml'], dir);
    expect(changed.code).not.toBe(0);
    expect(changed.output).toContain('MqttIngestSpoolAge');
    writeFileSync(path.join(dir, 'alerts.yml'), alerts.replace('mqtt_ingest_spool_full == 1', 'mqtt_ingest_spool_full == == 1'));
    const broken = await runPromtool(['check', 'rules', 'alerts.yml'], dir);
    expect(broken.code).not.toBe(0);
  });
});
