import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers/node-process.js';
import { hasMosquitto } from './helpers/mosquitto.js';
import { hasPubSubEmulator } from './helpers/pubsub-emulator.js';
import { serviceAvailable } from './helpers/skip.js';

const run =
  serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients') &&
  serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component');

// Keeps `npm run bench` working: every case runs small. No timing is asserted here (shared machines drift);
// figures come from full runs of `npm run bench`.
describe.runIf(run)('npm run bench -- --quick', () => {
  // More than the default two minutes: the broker cases alone start and stop a dozen nodes.
  it('runs every case and writes a JSON report with a result per case', async () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'bench-out-'));
    const code = await new Promise<number | null>((resolve) => {
      const proc = spawn(process.execPath, [path.join(ROOT, 'dist', 'bench', 'run.js'), '--quick', '--out', out], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      proc.stdout.resume();
      proc.stderr.resume();
      proc.on('exit', resolve);
    });
    expect(code).toBe(0);
    const report = JSON.parse(readFileSync(path.join(out, 'quick-latest.json'), 'utf8')) as {
      quick: boolean;
      results: { case: string; ratio: number | null; met: boolean | null; details: Record<string, number | string> }[];
    };
    expect(report.quick).toBe(true);
    expect(report.results).toHaveLength(39);
    const [drain, live, pubsub, pubsubRpc, pubsubOrdered, pubsubEncoder, routes, routesCpu, routesAttributes, routesAttributesCpu, sparkplug, sparkplugCpu, latency, rss, embedded] = report.results;
    const brokerRows = report.results.slice(15, 21);
    const [scaleReady, scaleLatency, scaleRss] = report.results.slice(21, 24);
    const fleetRows = report.results.slice(24, 26);
    const shareRows = report.results.slice(26, 28);
    const e2eRows = report.results.slice(28, 32);
    const backlogRows = report.results.slice(32, 34);
    const floorRows = report.results.slice(34);
    expect(sparkplug.case).toMatch(/Sparkplug/);
    expect(Number(sparkplug.details.decodeCpuUsPerMetric)).toBeGreaterThan(0);
    expect(sparkplugCpu.case).toMatch(/CPU per metric/);
    expect(pubsubRpc.case).toMatch(/against its own RPC/);
    expect(pubsubOrdered.case).toMatch(/PUBSUB_ORDERING_KEY/);
    expect(pubsubEncoder.case).toMatch(/own RPC and encoder/);
    expect(routes.case).toMatch(/three routes/);
    expect(routesAttributes.case).toMatch(/attributes/);
    for (const r of [routesCpu, routesAttributesCpu]) expect(r.case).toMatch(/CPU per message/);
    for (const r of [drain, live, pubsub, pubsubRpc, pubsubOrdered, pubsubEncoder, routes, routesCpu, routesAttributes, routesAttributesCpu, sparkplug, sparkplugCpu]) {
      expect(r.details.nodeRate).toBeGreaterThan(0);
      expect(r.details.baselineRate).toBeGreaterThan(0);
    }
    expect(latency.details.commitSamples).toBeGreaterThan(0);
    expect(latency.details.visibleSamples).toBeGreaterThan(0);
    expect(rss.details.peakMb).toBeGreaterThan(0);
    expect(embedded.details.embeddedRate).toBeGreaterThan(0);
    // One row per publisher count and protocol, each mode's rate to the spool and its CPU per message.
    expect(brokerRows.map((r) => `${r.details.publishers}/${r.details.protocolVersion}`)).toEqual(['4/4', '4/5', '16/4', '16/5', '64/4', '64/5']);
    for (const r of brokerRows) {
      expect(r.case).toMatch(/QoS 1 publishers, MQTT (3\.1\.1|5) → spool: embedded broker/);
      for (const key of ['embeddedRate', 'mosquittoRate', 'embeddedPubackRate', 'mosquittoPubackRate', 'embeddedCpuUsPerMessage', 'mosquittoCpuUsPerMessage']) {
        expect(Number(r.details[key]), key).toBeGreaterThan(0);
      }
    }
    expect(scaleReady.case).toMatch(/idle clients/);
    expect(scaleReady.details.readyzAnswers).toBeGreaterThan(0);
    expect(scaleLatency.details.latencySamples).toBeGreaterThan(0);
    // The embedded broker answers a PUBACK only after the commit: every acknowledged message is in the spool.
    expect(scaleLatency.details.committed).toBeGreaterThanOrEqual(Number(scaleLatency.details.acked));
    expect(scaleRss.details.rssIdleMb).toBeGreaterThan(0);
    // `mqtt-ingest simulate` into the embedded broker and the mosquitto mode, each against a bare Mosquitto: what the
    // fleet saw acknowledged is what the spool committed and what the file sink holds.
    expect(fleetRows.map((r) => r.case)).toEqual([expect.stringMatching(/^fleet of [\d,]+ devices \(`mqtt-ingest simulate`.*embedded broker$/), expect.stringMatching(/supervised Mosquitto mode/)]);
    for (const r of fleetRows) {
      expect(r.details.acknowledged).toBe(r.details.messages);
      expect(r.details.committed).toBe(r.details.acknowledged);
      expect(r.details.inFileSink).toBe(r.details.acknowledged);
      for (const key of ['nodeRate', 'baselineRate', 'nodeCpuUsPerMessage', 'bareMosquittoCpuUsPerMessage', 'simulateCores']) expect(Number(r.details[key]), key).toBeGreaterThan(0);
    }
    // Two and three nodes sharing one Mosquitto's backlog, each against one node: all of it committed, every member a share.
    expect(shareRows.map((r) => r.details.nodes)).toEqual([2, 3]);
    for (const r of shareRows) {
      const shares = String(r.details.shares).split(' / ').map(Number);
      expect(shares).toHaveLength(Number(r.details.nodes));
      expect(shares.reduce((a, b) => a + b, 0)).toBe(r.details.messages);
      for (const s of shares) expect(s).toBeGreaterThan(0);
      for (const key of ['nodeRate', 'baselineRate', 'nodeCpuUsPerMessage', 'brokerCpuUsPerMessage']) expect(Number(r.details[key]), key).toBeGreaterThan(0);
    }
    // End to end: the node, the non-durable bridge and mosquitto_sub, each in its own pass over the same live stream,
    // each consumer's rate and CPU per message and the broker's CPU in its pass; the node's spool commits counted.
    expect(e2eRows.map((r) => r.case)).toEqual([
      expect.stringMatching(/^e2e: \d+ QoS 1 publishers → Mosquitto → node → Pub\/Sub emulator/),
      expect.stringMatching(/non-durable bridge/),
      expect.stringMatching(/CPU per message: the node against the non-durable bridge/),
      expect.stringMatching(/CPU per message of the node, absolute/),
    ]);
    const e2e = e2eRows[0]!.details;
    for (const who of ['node', 'bridge', 'sub']) {
      for (const key of ['Rate', 'CpuUsPerMessage', 'BrokerCpuUsPerMessage', 'Cores']) expect(Number(e2e[`${who}${key}`]), `${who}${key}`).toBeGreaterThan(0);
    }
    for (const key of ['nodeEmulatorCpuUsPerMessage', 'bridgeEmulatorCpuUsPerMessage', 'publisherCores', 'publisherRate', 'nodeCommits', 'nodeMessagesPerCommit']) {
      expect(Number(e2e[key]), key).toBeGreaterThan(0);
    }
    expect(e2eRows[0]!.ratio).toBeCloseTo(Number(e2e.nodeRate) / Number(e2e.subRate), 2);
    expect(e2eRows[2]!.ratio).toBeCloseTo(Number(e2e.nodeCpuUsPerMessage) / Number(e2e.bridgeCpuUsPerMessage), 1);
    expect(e2eRows[2]!.met).toBe(e2eRows[2]!.ratio! <= 1.25);
    expect(e2eRows[3]!.met).toBe(Number(e2e.nodeCpuUsPerMessage) <= 12);
    // The backlog: drained after a SIGKILL, the first and last tenth timed, RSS sampled, the open timed.
    expect(backlogRows[0]!.case).toMatch(/^50,000-message spool backlog → Pub\/Sub emulator, after a SIGKILL: the last [\d,]+ against the first$/);
    expect(backlogRows[1]!.case).toMatch(/RSS: peak over the drain/);
    const backlog = backlogRows[0]!.details;
    expect(Number(backlog.deliveredBeforeKill)).toBeGreaterThanOrEqual(5_000);
    expect(Number(backlog.pendingAtRestart)).toBeGreaterThan(0);
    expect(Number(backlog.pendingAtRestart)).toBeLessThanOrEqual(45_000);
    expect(Number(backlog.openSeconds)).toBeGreaterThan(0);
    expect(Number(backlog.rssPeakMb)).toBeGreaterThan(0);
    // SQLite alone on the spool's statements: a figure per statement, each over rows it really wrote or read.
    expect(floorRows.map((r) => r.details.what)).toEqual(['insert', 'lease', 'walk', 'ack-range', 'ack-list']);
    for (const r of floorRows) {
      expect(Number(r.details.usPerRow), r.case).toBeGreaterThan(0);
      expect(Number(r.details.rows), r.case).toBeGreaterThanOrEqual(5_000);
    }
    expect(backlogRows[0]!.ratio).toBeCloseTo(Number(backlog.lastRate) / Number(backlog.firstRate), 1);
  }, 300_000);
});
