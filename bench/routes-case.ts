/**
 * The routes case: a spool backlog delivered to the Pub/Sub emulator through a three-route file with JSON field
 * extraction (docs/routing.md), against the same node and backlog without a routes file. Runs alternate, three
 * times each, and the best of each counts (the emulator warms up as it goes); the node's CPU per message is
 * reported beside it (the median of each), since the emulator shares the machine's cores and bounds the rate too.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { PubSubEmulator } from '../test/helpers/pubsub-emulator.js';
import { createTopic, prefillSpool, pubsubEnv, result, type CaseResult } from './cases.js';
import { cleanup, cpuSeconds, pollCounter, rateFromTimeline, startNode, tempDir } from './lib.js';

const DELIVERED = 'mqtt_ingest_messages_delivered_total';
const KINDS = ['pressure', 'flow', 'vibration'] as const;

/** Three routes, each its own topic, with the payload's fields read and typed; `attributes`: three more attributes per message. */
function routesFile(attributes: boolean): string {
  return `routes:\n${KINDS.map(
    (kind) => `  - name: ${kind}
    topic: bench/{site}/${kind}/{sensor}
    decode: json
    fields:
      seq:  { from: payload.seq, type: int }
      bar:  { from: payload.bar, type: float }
      unit: { from: payload.unit, type: string }
      sent: { from: payload.sent, type: timestamp }
    pubsub:
      topic: bench-route-${kind}
${attributes ? '      attributes: [site, sensor, unit]\n' : ''}`,
  ).join('')}unmatched: dead_letter\n`;
}

/** A run's delivery rate, and the node process's CPU per message delivered while it was measured. */
interface Run {
  rate: number;
  cpuUs: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function spoolToPubSubRoutes(emu: PubSubEmulator, n: number): Promise<CaseResult[]> {
  await createTopic(emu, 'bench-routes-raw');
  for (const kind of KINDS) await createTopic(emu, `bench-route-${kind}`);
  const topic = (i: number) => `bench/pit-north/${KINDS[i % 3]}/PT-${String(i % 64).padStart(3, '0')}`;
  const run = async (routes: 'none' | 'fields' | 'attributes'): Promise<Run> => {
    const dataDir = tempDir('routes');
    prefillSpool(dataDir, n, topic);
    const extra: Record<string, string> = {};
    if (routes !== 'none') {
      extra.ROUTES_FILE = path.join(dataDir, 'routes.yaml');
      writeFileSync(extra.ROUTES_FILE, routesFile(routes === 'attributes'));
    }
    const node = await startNode({ ...pubsubEnv(emu, 'bench-routes-raw'), MQTT_BROKER_MODE: 'embedded', ...extra }, { dataDir });
    try {
      // CPU from the first look at the counter (start-up excluded) to the last message delivered.
      await node.waitReady();
      const pid = node.proc.pid!;
      const before = { cpu: cpuSeconds(pid), delivered: await node.metric(DELIVERED, { sink: 'pubsub' }) };
      const tl = await pollCounter(node, DELIVERED, (v) => v >= n, { intervalMs: 20, labels: 'sink="pubsub"' });
      const cpuUs = ((cpuSeconds(pid) - before.cpu) * 1e6) / (n - before.delivered);
      return { rate: rateFromTimeline(tl, n).rate, cpuUs };
    } finally {
      await node.stop();
      cleanup(dataDir);
    }
  };
  const plain: Run[] = [];
  const routed: Run[] = [];
  const attributed: Run[] = [];
  for (let round = 0; round < 3; round++) {
    plain.push(await run('none'));
    routed.push(await run('fields'));
    attributed.push(await run('attributes'));
  }
  const rates = (runs: Run[]) => runs.map((r) => Math.round(r.rate)).join(' / ');
  const cpus = (runs: Run[]) => runs.map((r) => r.cpuUs.toFixed(1)).join(' / ');
  const details = {
    messages: n,
    routedRuns: rates(routed),
    withAttributesRuns: rates(attributed),
    plainRuns: rates(plain),
    routedCpuUsPerMessage: cpus(routed),
    withAttributesCpuUsPerMessage: cpus(attributed),
    plainCpuUsPerMessage: cpus(plain),
  } as unknown as Record<string, number>;
  const best = (runs: Run[]) => Math.max(...runs.map((r) => r.rate));
  const cpu = (runs: Run[]) => median(runs.map((r) => r.cpuUs));
  const without = 'the same node and backlog without a routes file';
  const cpuRow = (name: string, runs: Run[]): CaseResult => ({
    ...result(name, 1 / cpu(runs), 1 / cpu(plain), without, 'report', details),
    node: `${cpu(runs).toFixed(1)} µs`,
    baseline: `${cpu(plain).toFixed(1)} µs (${without})`,
  });
  return [
    result('spool → Pub/Sub emulator, three routes with JSON fields, a topic each', best(routed), best(plain), without, 0.8, details),
    cpuRow('… its CPU per message (node process, median of 3)', routed),
    result('… the same routes adding three attributes to every message', best(attributed), best(plain), without, 'report', details),
    cpuRow('… its CPU per message (node process, median of 3)', attributed),
  ];
}
