/**
 * `npm run bench`: every throughput, latency and memory case against a baseline measured in the same run,
 * on a real Mosquitto and the real Pub/Sub emulator started here. Prints a table, writes it as JSON under
 * bench/results/ and (full runs only) into docs/performance.md between its bench markers.
 * `--quick` runs every case small (about two minutes) so a test keeps the script working.
 * `--only name[,name]` runs some cases: drain, live, pubsub, routes, sparkplug, latency, rss, embedded, broker, broker-scale,
 * fleet, share, e2e, backlog, floor. The broker, fleet, share and e2e cases' sizes can be set by environment: BENCH_BROKER_MESSAGES, BENCH_BROKER_ROUNDS,
 * BENCH_BROKER_WINDOW, BENCH_SCALE_IDLE, BENCH_SCALE_PUBLISHERS, BENCH_SCALE_SECONDS, BENCH_SCALE_PROCESSES,
 * BENCH_FLEET_DEVICES, BENCH_FLEET_MESSAGES, BENCH_FLEET_ROUNDS, BENCH_SHARE_MESSAGES, BENCH_E2E_MESSAGES, BENCH_E2E_PUBLISHERS,
 * BENCH_E2E_ROUNDS, BENCH_BACKLOG_MESSAGES.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { startPubSubEmulator } from '../test/helpers/pubsub-emulator.js';
import { ROOT } from '../test/helpers/node-process.js';
import { drainBacklog, embeddedVsMosquitto, latency, liveStream, memory, spoolToPubSub, type CaseResult } from './cases.js';
import { spoolToPubSubRoutes } from './routes-case.js';
import { sparkplugToBigQuery } from './sparkplug-case.js';
import { brokerModes } from './broker-case.js';
import { brokerScale } from './broker-scale-case.js';
import { fleet } from './fleet-case.js';
import { sharedSubscriptions } from './share-case.js';
import { endToEnd } from './e2e-case.js';
import { backlogDrain } from './backlog-case.js';
import { spoolFloor } from './floor-case.js';

process.env.METADATA_SERVER_DETECTION = 'none';
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' },
  },
});
const quick = values.quick as boolean;
const only = values.only ? new Set(values.only.split(',')) : undefined;
const want = (name: string) => !only || only.has(name);
const size = quick
  ? { drain: 20_000, live: 20_000, pubsub: 10_000, routes: 10_000, sparkplug: 5_000, latencyRate: 2000, latencySeconds: 2, rss: 20_000, embedded: 10_000 }
  : { drain: 300_000, live: 200_000, pubsub: 200_000, routes: 200_000, sparkplug: 20_000, latencyRate: 5000, latencySeconds: 20, rss: 1_000_000, embedded: 200_000 };
const sized = (name: string, full: number, small: number) => Number(process.env[name] ?? (quick ? small : full));
const brokerSize = {
  messages: sized('BENCH_BROKER_MESSAGES', 100_000, 3_000),
  rounds: sized('BENCH_BROKER_ROUNDS', 2, 1),
  window: sized('BENCH_BROKER_WINDOW', 100, 100),
};
const scaleSize = {
  idle: sized('BENCH_SCALE_IDLE', 5_000, 200),
  publishers: sized('BENCH_SCALE_PUBLISHERS', 1_000, 50),
  rate: 5,
  seconds: sized('BENCH_SCALE_SECONDS', 60, 4),
  batch: 200,
  publisherProcesses: sized('BENCH_SCALE_PROCESSES', 2, 1),
};
const fleetSize = {
  devices: sized('BENCH_FLEET_DEVICES', 500, 500),
  messages: sized('BENCH_FLEET_MESSAGES', 200_000, 10_000),
  rounds: sized('BENCH_FLEET_ROUNDS', 2, 1),
};
const e2eSize = {
  messages: sized('BENCH_E2E_MESSAGES', 300_000, 8_000),
  publishers: sized('BENCH_E2E_PUBLISHERS', 4, 4),
  rounds: sized('BENCH_E2E_ROUNDS', 2, 1),
  warmup: quick ? 1_000 : 5_000,
};

const started = Date.now();
const [broker, emu] = await Promise.all([startMosquitto({ persistence: false }), startPubSubEmulator()]);
const results: CaseResult[] = [];
try {
  if (want('drain')) results.push(...(await step('drain', () => drainBacklog(broker, size.drain))));
  if (want('live')) results.push(...(await step('live', () => liveStream(broker, size.live))));
  if (want('pubsub')) results.push(...(await step('pubsub', () => spoolToPubSub(emu, size.pubsub))));
  if (want('routes')) results.push(...(await step('routes', () => spoolToPubSubRoutes(emu, size.routes))));
  if (want('sparkplug')) results.push(...(await step('sparkplug', () => sparkplugToBigQuery(size.sparkplug))));
  if (want('latency')) results.push(...(await step('latency', () => latency(emu, size.latencyRate, size.latencySeconds))));
  if (want('rss')) results.push(...(await step('rss', () => memory(emu, size.rss))));
  if (want('embedded')) results.push(...(await step('embedded', () => embeddedVsMosquitto(size.embedded, 4))));
  if (want('broker')) results.push(...(await step('broker', () => brokerModes(brokerSize))));
  if (want('broker-scale')) results.push(...(await step('broker-scale', () => brokerScale(scaleSize))));
  if (want('fleet')) results.push(...(await step('fleet', () => fleet(fleetSize))));
  if (want('share')) results.push(...(await step('share', () => sharedSubscriptions(sized('BENCH_SHARE_MESSAGES', 200_000, 6_000)))));
  if (want('e2e')) results.push(...(await step('e2e', () => endToEnd(broker, emu, e2eSize))));
  if (want('backlog')) results.push(...(await step('backlog', () => backlogDrain(emu, sized('BENCH_BACKLOG_MESSAGES', 10_000_000, 50_000)))));
  if (want('floor')) results.push(...(await step('floor', async () => spoolFloor(sized('BENCH_FLOOR_ROWS', 200_000, 10_000)))));
} finally {
  await Promise.all([broker.stop(), emu.stop()]);
}

/** Runs one case; a case reports one row, or several when it measures against more than one baseline. */
async function step(name: string, fn: () => Promise<CaseResult | CaseResult[]>): Promise<CaseResult[]> {
  process.stderr.write(`bench: ${name}…\n`);
  const rows = [await fn()].flat();
  for (const r of rows) process.stderr.write(`bench: ${name}: ${r.node} vs ${r.baseline}\n`);
  return rows;
}

const table = renderTable(results);
console.log(table);
const report = {
  when: new Date().toISOString(),
  quick,
  seconds: Math.round((Date.now() - started) / 1000),
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGb: Math.round(os.totalmem() / 1024 ** 3), node: process.version },
  results,
};
const outDir = values.out ?? path.join(ROOT, 'bench', 'results');
mkdirSync(outDir, { recursive: true });
// Only a full run of every case stands for the node: a quick or partial (--only) run gets a file of its own and
// leaves latest.json, the dated record and docs/performance.md as the last full run wrote them.
const full = !quick && !only;
const name = quick ? 'quick-latest.json' : only ? 'only-latest.json' : 'latest.json';
writeFileSync(path.join(outDir, name), JSON.stringify({ ...report, only: only ? [...only] : undefined }, null, 2) + '\n');
if (full && !values.out) {
  writeFileSync(path.join(outDir, `${report.when.replace(/[:.]/g, '-')}.json`), JSON.stringify(report, null, 2) + '\n');
  updatePerformanceDoc(table, report.when);
}
console.log(`results: ${path.join(outDir, name)} (${report.seconds} s)`);

function renderTable(rows: CaseResult[]): string {
  const lines = ['| case | node | baseline | ratio | goal | met |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    const met = r.met === null ? '—' : r.met ? 'yes' : '**no**';
    lines.push(`| ${r.case} | ${r.node} | ${r.baseline} | ${r.ratio === null ? '—' : `${r.ratio.toFixed(2)}×`} | ${r.goal} | ${met} |`);
  }
  return lines.join('\n');
}

function updatePerformanceDoc(tableText: string, when: string): void {
  const doc = path.join(ROOT, 'docs', 'performance.md');
  if (!existsSync(doc)) return;
  const text = readFileSync(doc, 'utf8');
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < i) return;
  const block = `${start}\nLatest full run: ${when} (\`npm run bench\`).\n\n${tableText}\n${end}`;
  writeFileSync(doc, text.slice(0, i) + block + text.slice(j + end.length));
}
