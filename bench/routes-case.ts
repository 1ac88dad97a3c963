/**
 * The routes case: a spool backlog delivered to the Pub/Sub emulator through a three-route file with JSON field
 * extraction (docs/routing.md), against the same node and backlog without a routes file. Runs alternate, twice
 * each, and the best of each counts (the emulator warms up as it goes).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { PubSubEmulator } from '../test/helpers/pubsub-emulator.js';
import { createTopic, prefillSpool, pubsubEnv, result, type CaseResult } from './cases.js';
import { cleanup, pollCounter, rateFromTimeline, startNode, tempDir } from './lib.js';

const DELIVERED = 'mqtt_ingest_messages_delivered_total';
const KINDS = ['pressure', 'flow', 'vibration'] as const;

/** Three routes, each its own topic, with the payload's fields read and typed, its sensor an attribute. */
function routesFile(): string {
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
      attributes: [site, sensor, unit]
`,
  ).join('')}unmatched: dead_letter\n`;
}

export async function spoolToPubSubRoutes(emu: PubSubEmulator, n: number): Promise<CaseResult> {
  await createTopic(emu, 'bench-routes-raw');
  for (const kind of KINDS) await createTopic(emu, `bench-route-${kind}`);
  const topic = (i: number) => `bench/pit-north/${KINDS[i % 3]}/PT-${String(i % 64).padStart(3, '0')}`;
  const run = async (routes: boolean): Promise<number> => {
    const dataDir = tempDir('routes');
    prefillSpool(dataDir, n, topic);
    const extra: Record<string, string> = {};
    if (routes) {
      extra.ROUTES_FILE = path.join(dataDir, 'routes.yaml');
      writeFileSync(extra.ROUTES_FILE, routesFile());
    }
    const node = await startNode({ ...pubsubEnv(emu, 'bench-routes-raw'), MQTT_BROKER_MODE: 'embedded', ...extra }, { dataDir });
    try {
      const tl = await pollCounter(node, DELIVERED, (v) => v >= n, { intervalMs: 20, labels: 'sink="pubsub"' });
      return rateFromTimeline(tl, n).rate;
    } finally {
      await node.stop();
      cleanup(dataDir);
    }
  };
  const plain: number[] = [];
  const routed: number[] = [];
  for (let round = 0; round < 2; round++) {
    plain.push(await run(false));
    routed.push(await run(true));
  }
  const details = { messages: n, routedRuns: routed.map(Math.round).join(' / '), plainRuns: plain.map(Math.round).join(' / ') } as unknown as Record<string, number>;
  return result(
    'spool → Pub/Sub emulator with three routes and JSON fields',
    Math.max(...routed),
    Math.max(...plain),
    'the same node and backlog without a routes file',
    0.8,
    details,
  );
}
