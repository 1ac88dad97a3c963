/**
 * deploy/monitoring/ against the real thing: a real `prometheus` scrapes a real node (embedded broker, Pub/Sub
 * sink on the emulator) every second and evaluates alerts.yml; a Pub/Sub outage makes MqttIngestDeliveryFailing
 * fire, and its end resolves it; the first dead letter after the start fires MqttIngestDeadLetters. Every metric
 * dashboard.json queries is in the node's scrape.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startNode, type NodeProcess } from './helpers/node-process.js';
import { hasPrometheus, startPrometheus, type PromAlert, type TestPrometheus } from './helpers/prometheus.js';
import { exposedMetricNames, metricNames } from './helpers/promql-names.js';
import { createTopicAndSubscription, hasPubSubEmulator, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { publishRange } from './helpers/load.js';
import { serviceAvailable } from './helpers/skip.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';
import { waitFor } from './helpers/ports.js';

const MONITORING = path.join(ROOT, 'deploy', 'monitoring');

const run =
  serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component') &&
  serviceAvailable('prometheus', hasPrometheus(), 'apt-get install prometheus');

/** The expressions of every panel target of the dashboard, rows' nested panels included. */
function dashboardExpressions(): string[] {
  type Panel = { panels?: Panel[]; targets?: { expr?: string }[] };
  const dashboard = JSON.parse(readFileSync(path.join(MONITORING, 'dashboard.json'), 'utf8')) as { panels: Panel[] };
  const walk = (panels: Panel[]): string[] => panels.flatMap((p) => [...(p.targets ?? []).flatMap((t) => (t.expr ? [t.expr] : [])), ...walk(p.panels ?? [])]);
  return walk(dashboard.panels);
}

describe.runIf(run)('alerts.yml and dashboard.json against a real Prometheus scraping a real node', () => {
  let emu: PubSubEmulator;
  let proxy: TcpProxy;
  let node: NodeProcess;
  let prom: TestPrometheus;
  let dir: string;

  beforeAll(async () => {
    emu = await startPubSubEmulator();
    await createTopicAndSubscription(emu.host, emu.projectId, 'alerts', 'alerts-check');
    const [host, port] = emu.host.split(':');
    proxy = await startTcpProxy(host!, Number(port));
    node = await startNode({
      MQTT_BROKER_MODE: 'embedded',
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: 'alerts',
      PUBSUB_EMULATOR_HOST: `127.0.0.1:${proxy.port}`,
      RETRY_INITIAL_DELAY_MS: '200',
      RETRY_MAX_DELAY_MS: '1000',
    });
    await node.waitReady();
    // The rules as written, but every `for:` shortened to 3 s: MqttIngestDeliveryFailing waits 10 minutes in
    // production, too long for a test. Expressions, labels and annotations are unchanged.
    dir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-alerts-'));
    const rules = readFileSync(path.join(MONITORING, 'alerts.yml'), 'utf8');
    const fast = rules.replace(/^(\s+)for: \d+[smh]$/gm, '$1for: 3s');
    expect(fast).not.toBe(rules);
    writeFileSync(path.join(dir, 'alerts.yml'), fast);
    prom = await startPrometheus(`127.0.0.1:${node.httpPort}`, path.join(dir, 'alerts.yml'));
  });
  afterAll(async () => {
    await prom?.stop();
    await node?.kill();
    await proxy?.close();
    await emu?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const alertsNamed = async (name: string): Promise<PromAlert[]> => (await prom.alerts()).filter((a) => a.labels.alertname === name);
  /** The series an instant query of Prometheus answers. */
  const query = async (q: string): Promise<unknown[]> => {
    const res = await fetch(`${prom.url}/api/v1/query?query=${encodeURIComponent(q)}`);
    return ((await res.json()) as { data: { result: unknown[] } }).data.result;
  };

  it('Prometheus scrapes the node, and the Pub/Sub outage alert fires while Pub/Sub is unreachable and resolves after', async () => {
    await waitFor(async () => (await prom.targets()).some((t) => t.health === 'up'), 20_000, 'the node scraped');
    const url = `mqtt://127.0.0.1:${node.mqttPort}`;
    await publishRange(url, 0, 50);
    await waitFor(async () => (await node.metric('mqtt_ingest_messages_delivered_total', { sink: 'pubsub' })) >= 50, 20_000, '50 delivered');
    // Several evaluations with the sink up: nothing about delivery is pending or firing.
    await new Promise((r) => setTimeout(r, 4_000));
    expect(await alertsNamed('MqttIngestDeliveryFailing')).toEqual([]);
    expect(await alertsNamed('MqttIngestNotReady')).toEqual([]);

    proxy.cut();
    const cutAt = Date.now();
    await publishRange(url, 50, 100);
    const firing = await waitFor(
      async () => (await alertsNamed('MqttIngestDeliveryFailing')).find((a) => a.state === 'firing'),
      60_000,
      'MqttIngestDeliveryFailing firing',
    );
    expect(firing.labels).toMatchObject({ sink: 'pubsub', severity: 'page', instance: `127.0.0.1:${node.httpPort}` });
    expect(firing.annotations.summary).toBe(`Sink pubsub of 127.0.0.1:${node.httpPort} has been failing for 10 minutes`);
    expect(firing.annotations.runbook_url).toBe('docs/runbook.md#mqttingestdeliveryfailing');
    console.log(`MqttIngestDeliveryFailing fired ${Date.now() - cutAt} ms after the cut (for: 3s)`);
    // The node stays ready through the outage: the spool holds the messages.
    expect(await alertsNamed('MqttIngestNotReady')).toEqual([]);

    await proxy.restore();
    const restoredAt = Date.now();
    await waitFor(async () => (await node.metric('mqtt_ingest_spool_messages')) === 0, 60_000, 'spool drained');
    await waitFor(async () => (await alertsNamed('MqttIngestDeliveryFailing')).length === 0, 30_000, 'MqttIngestDeliveryFailing resolved');
    console.log(`MqttIngestDeliveryFailing resolved ${Date.now() - restoredAt} ms after the restore`);
  });

  it('the first dead letter after the start fires MqttIngestDeadLetters: its series goes from 0 to 1', async () => {
    const series = { sink: 'pubsub', reason: 'attribute_too_long' };
    // The node exports the series at 0 from its start, and Prometheus holds that 0 before the dead letter.
    expect(await node.metrics()).toContain('mqtt_ingest_dead_letters_total{sink="pubsub",reason="attribute_too_long"} 0\n');
    await waitFor(async () => (await query('mqtt_ingest_dead_letters_total{sink="pubsub",reason="attribute_too_long"} == 0')).length === 1, 20_000, 'the 0 scraped');
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { protocolVersion: 4 });
    try {
      // A topic longer than a Pub/Sub attribute value (1024 bytes) can never be sent: a dead letter.
      await client.publishAsync(`plant/${'x'.repeat(1100)}/1`, 'a', { qos: 1 });
    } finally {
      await client.endAsync();
    }
    await waitFor(async () => (await node.metric('mqtt_ingest_dead_letters_total', series)) === 1, 20_000, 'a dead letter');
    const firing = await waitFor(
      async () => (await alertsNamed('MqttIngestDeadLetters')).find((a) => a.state === 'firing'),
      30_000,
      'MqttIngestDeadLetters firing',
    );
    expect(firing.labels).toMatchObject({ ...series, severity: 'ticket' });
    expect(firing.annotations.runbook_url).toBe('docs/runbook.md#mqttingestdeadletters');
    expect(await node.metric('mqtt_ingest_dead_letters_total', series)).toBe(1);
  });

  it('every metric dashboard.json queries is in the node\'s scrape', async () => {
    const exposed = exposedMetricNames(await node.metrics());
    const queried = [...new Set(dashboardExpressions().flatMap(metricNames))].sort();
    expect(queried.length).toBeGreaterThanOrEqual(15);
    const missing = queried.filter((m) => !exposed.has(m));
    expect(missing).toEqual([]);
  });
});
