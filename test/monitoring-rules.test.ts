/**
 * deploy/monitoring/alerts.yml is valid for Prometheus (`promtool check rules`), behaves as its unit tests
 * say (`promtool test rules alerts.test.yml`: every alert firing and not firing), reads only metrics the
 * node defines, and links each alert to its own entry of docs/runbook.md.
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

/**
 * The anchors a Markdown file offers links (`file.md#anchor`), as GitHub renders it: one per heading, from its
 * text in lower case with spaces turned into hyphens and punctuation dropped (a repeated one gets `-1`, `-2`, …),
 * and every explicit `<a id="…">` or `<a name="…">`. Lines inside fenced code blocks are not headings.
 */
function markdownAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | undefined;
  for (const line of markdown.split('\n')) {
    const f = /^\s{0,3}(```|~~~)/.exec(line);
    if (f) {
      if (fence === undefined) fence = f[1];
      else if (f[1] === fence) fence = undefined;
      continue;
    }
    if (fence !== undefined) continue;
    const h = /^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
    if (h) {
      const base = slug(h[1]!);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      anchors.add(n === 0 ? base : `${base}-${n}`);
    }
    for (const a of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(a[1]!);
  }
  return anchors;
}

/** GitHub's anchor of a heading's text: the rendered text (no code marks, link targets or tags), lower case, punctuation dropped. */
function slug(heading: string): string {
  const text = heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .replace(/[`*]/g, '');
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** The `## title` section of a Markdown file: from its heading to the next heading of level 2 or higher. */
function markdownSection(markdown: string, title: string): string {
  const start = markdown.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`no section "## ${title}"`);
  const next = markdown.slice(start + 1).search(/\n#{1,2} /);
  return next < 0 ? markdown.slice(start + 1) : markdown.slice(start + 1, start + 1 + next);
}

describe('alert rules, without Prometheus', () => {
  const docs = readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8');
  const runbook = readFileSync(path.join(ROOT, 'docs', 'runbook.md'), 'utf8');

  it('GitHub\'s heading anchors, as the Runbook links use them', () => {
    const md = [
      '# Operating mqtt-ingest',
      '## Spool sizing against the 10 GB disk',
      "## The spool's files: what the node guarantees, and what never to do",
      '### Pub/Sub permission denied',
      '#### `MqttIngestSpoolAge` (page)',
      '```sh',
      '# a comment in a code block, no heading',
      '```',
      '## Upgrading',
      '## Upgrading',
      'text <a id="mqttingestsomething"></a> more',
    ].join('\n');
    expect([...markdownAnchors(md)]).toEqual([
      'operating-mqtt-ingest',
      'spool-sizing-against-the-10-gb-disk',
      'the-spools-files-what-the-node-guarantees-and-what-never-to-do',
      'pubsub-permission-denied',
      'mqttingestspoolage-page',
      'upgrading',
      'upgrading-1',
      'mqttingestsomething',
    ]);
    expect(markdownSection(md, 'Spool sizing against the 10 GB disk')).not.toContain('Upgrading');
  });

  it('every rule has a severity, a summary, a description, and a runbook_url to its own entry of the Runbook', () => {
    expect(rules.length).toBeGreaterThanOrEqual(14);
    const anchors = markdownAnchors(runbook);
    const linked = new Set<string>();
    for (const r of rules) {
      expect(['page', 'ticket'], r.alert).toContain(r.labels?.severity);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
      expect(r.annotations?.description, r.alert).toBeTruthy();
      const url = r.annotations?.runbook_url ?? '';
      const m = /^docs\/runbook\.md#([^#\s]+)$/.exec(url);
      expect(m, `${r.alert}: runbook_url ${url}`).not.toBeNull();
      const anchor = m![1]!;
      expect(anchors.has(anchor), `${r.alert}: #${anchor} is no heading or anchor of docs/runbook.md`).toBe(true);
      // Its own entry: the heading named after the alert.
      expect(anchor, r.alert).toBe(r.alert.toLowerCase());
      linked.add(anchor);
    }
    expect(linked.size).toBe(rules.length);
  });

  it('every link within and between docs/operations.md and docs/runbook.md leads to a heading or anchor', () => {
    const files = { 'operations.md': docs, 'runbook.md': runbook };
    const anchors = { 'operations.md': markdownAnchors(docs), 'runbook.md': markdownAnchors(runbook) };
    const broken: string[] = [];
    let count = 0;
    for (const [name, text] of Object.entries(files)) {
      for (const m of text.matchAll(/\]\(((?:operations|runbook)\.md)?#([^)\s]+)\)/g)) {
        count += 1;
        const target = (m[1] ?? name) as keyof typeof anchors;
        if (!anchors[target].has(m[2]!)) broken.push(`${name}: ${m[0]}`);
      }
    }
    expect(count).toBeGreaterThanOrEqual(14);
    expect(broken).toEqual([]);
    // The address the alerts linked before the runbook had a file of its own still leads there.
    expect(anchors['operations.md'].has('runbook')).toBe(true);
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
