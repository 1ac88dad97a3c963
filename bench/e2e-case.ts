/**
 * The end-to-end case: QoS 1 publishers → Mosquitto → consumer → Pub/Sub emulator, a live stream of `messages`
 * 200-byte JSON messages from `publishers` `mosquitto_pub -l -q 1` processes (e2e-stream.ts), through the bench's
 * Mosquitto, and three consumers, each in a pass of its own over the same stream:
 *
 * - the node, external mode, default settings (SPOOL_SYNC=full: each commit fsync'ed before its PUBACKs), the
 *   Pub/Sub sink on; the pass ends when `mqtt_ingest_messages_delivered_total{sink="pubsub"}` reaches the count;
 * - the non-durable bridge (bridge.ts): MQTT.js acknowledging on receipt, the same Publish RPC with the same
 *   batches, no spool; the pass ends when Pub/Sub has acknowledged every message (its own count of message ids);
 * - `mosquitto_sub -q 1 -c` to /dev/null, the cheapest reader of the stream, no Pub/Sub; the pass ends at its exit
 *   after the count (`-C`).
 *
 * Passes, not all three at once: on 2 cores the consumers would take CPU from each other and from the broker, and
 * each one's rate would then say how the scheduler shared the cores out, not what the consumer can do. Each pass
 * has the machine to itself: the publishers, Mosquitto, the consumer and (for two of them) the emulator.
 *
 * Every pass the same way: the consumer is started and subscribed (its session and subscription on a topic of this
 * pass alone, so no earlier consumer's session queues anything), then a warm-up of `warmup` messages goes through
 * it to the end (the node's Pub/Sub client is made on its first write; the bridge's and the emulator's first
 * requests are slow too): start-up is excluded. Then the CPU of the consumer (its process tree, /proc) and of
 * Mosquitto are read, the publishers started, and the same again at the pass's end. Rate: the messages over the
 * time from starting the publishers to the end. An untimed bridge pass warms the emulator first; then the passes
 * run `rounds` times, the order reversed each round. The best rate of each consumer counts, and the median CPU.
 */
import os from 'node:os';
import type { TestMosquitto } from '../test/helpers/mosquitto.js';
import type { PubSubEmulator } from '../test/helpers/pubsub-emulator.js';
import { createTopic, pubsubEnv, spoolOnly, type CaseResult } from './cases.js';
import { publishStream, writeStream, type Published, type Stream } from './e2e-stream.js';
import { startBridge, startMosquittoSub, type Pass } from './e2e-consumers.js';
import { cleanup, cpuSeconds, mosquittoSession, nowMs, processesWithArg, readCounter, startNode, tempDir, treeCpuSeconds, waitForLog } from './lib.js';

const DELIVERED = 'mqtt_ingest_messages_delivered_total';
const RECEIVED = 'mqtt_ingest_messages_received_total';

export interface E2eSize {
  messages: number;
  publishers: number;
  rounds: number;
  warmup: number;
}

type ConsumerName = 'node' | 'bridge' | 'mosquitto_sub';

interface PassResult {
  rate: number;
  seconds: number;
  cpuUs: number;
  brokerCpuUs: number;
  /** The Pub/Sub emulator's CPU per message over the pass (its processes found by their --port argument). */
  emulatorCpuUs: number;
  /** Cores the consumer used over the pass (its CPU seconds over the pass's seconds). */
  consumerCores: number;
  brokerCores: number;
  publisherCores: number;
  /** The node's spool commits over the pass: how many, their mean duration, messages per commit. */
  commits?: { count: number; meanMs: number; messagesPerCommit: number };
  /** Seconds from the publishers' start to the last one's exit. */
  publishSeconds: number;
  /** The node: seconds from the publishers' start until every message was received (committed to the spool). */
  intakeSeconds?: number;
}

interface Context {
  broker: TestMosquitto;
  emu: PubSubEmulator;
  size: E2eSize;
  stream: Stream;
  warm: Stream;
  pass: number;
}

/** The node's pass: delivered{sink="pubsub"} polled every 100 ms, every 10 ms from 90 % on (each poll is the node's CPU). */
async function nodePass(c: Context, k: string): Promise<PassResult> {
  const topic = `bench-e2e-${k}`;
  await createTopic(c.emu, topic);
  const filter = `bench/e2e/${k}/#`;
  const node = await startNode({ ...pubsubEnv(c.emu, topic), MQTT_BROKER: c.broker.url, MQTT_TOPICS: filter, MQTT_CLIENT_ID: `bench-e2e-node-${k}`, SPOOL_SYNC: 'full' });
  let intakeDone: number | undefined;
  try {
    await node.waitReady();
    await waitForLog(node, 'subscribed');
    const pass: Pass = {
      cpu: () => treeCpuSeconds(node.proc.pid!),
      sample: async () => {
        const text = await node.metrics();
        return {
          commits: metricValue(text, 'mqtt_ingest_spool_commit_seconds_count'),
          commitSeconds: metricValue(text, 'mqtt_ingest_spool_commit_seconds_sum'),
          received: metricValue(text, RECEIVED),
        };
      },
      until: async (count, fast) => {
        intakeDone = undefined;
        for (;;) {
          // When the intake had the stream in the spool: the rest of the pass is the sink's (received vs delivered).
          if (intakeDone === undefined && (await readCounter(node, RECEIVED)) >= count) intakeDone = nowMs();
          const v = await readCounter(node, DELIVERED, 'sink="pubsub"');
          const t = nowMs();
          if (v >= count) return t;
          if (node.proc.exitCode !== null) throw new Error(`the node exited (${node.proc.exitCode}):\n${node.logs.slice(-10).join('\n')}`);
          await new Promise((r) => setTimeout(r, fast !== undefined && v >= fast ? 10 : 100));
        }
      },
    };
    const r = await timedPass(c, k, pass, () => intakeDone);
    const [delivered, received] = [await readCounter(node, DELIVERED, 'sink="pubsub"'), await readCounter(node, RECEIVED)];
    const want = c.size.warmup + c.size.messages;
    if (delivered !== want || received !== want) throw new Error(`e2e node: received ${received}, delivered ${delivered} to Pub/Sub, of ${want}`);
    return r;
  } finally {
    await node.stop();
    cleanup(node.dataDir);
  }
}

async function bridgePass(c: Context, k: string, stream = c.stream): Promise<PassResult> {
  const topic = `bench-e2e-${k}`;
  await createTopic(c.emu, topic);
  const bridge = await startBridge({
    url: c.broker.url,
    filter: `bench/e2e/${k}/#`,
    clientId: `bench-e2e-bridge-${k}`,
    host: c.emu.host,
    project: c.emu.projectId,
    topic,
    marks: [c.size.warmup, c.size.warmup + stream.messages],
    env: { NODE_OPTIONS: spoolOnly.NODE_OPTIONS },
  });
  try {
    return await timedPass({ ...c, stream }, k, bridge);
  } finally {
    await bridge.stop();
  }
}

async function subPass(c: Context, k: string): Promise<PassResult> {
  const filter = `bench/e2e/${k}/#`;
  const id = `bench-e2e-sub-${k}`;
  await mosquittoSession(c.broker.port, filter, id);
  const sub = startMosquittoSub(c.broker.port, filter, id, c.size.warmup + c.size.messages);
  try {
    return await timedPass(c, k, sub);
  } finally {
    sub.stop();
  }
}

/** The warm-up through the consumer, then the timed stream; CPU and time from starting the publishers to the end. */
async function timedPass(c: Context, k: string, pass: Pass, intakeDone?: () => number | undefined): Promise<PassResult> {
  const prefix = `bench/e2e/${k}`;
  await publishStream(c.broker.port, prefix, c.warm);
  await pass.until(c.size.warmup);
  const brokerPid = c.broker.proc.pid!;
  const own0 = await pass.sample?.();
  const cpu0 = pass.cpu();
  const broker0 = cpuSeconds(brokerPid);
  const emulator0 = emulatorCpu(c.emu);
  const publishing = publishStream(c.broker.port, prefix, c.stream);
  publishing.catch(() => undefined); // awaited below
  const t0 = nowMs();
  const end = await pass.until(c.size.warmup + c.stream.messages, c.size.warmup + Math.floor(c.stream.messages * 0.9));
  const cpu = pass.cpu() - cpu0;
  const brokerCpu = cpuSeconds(brokerPid) - broker0;
  const emulatorCpuSeconds = emulatorCpu(c.emu) - emulator0;
  const own1 = await pass.sample?.();
  const published: Published = await publishing;
  const seconds = (end - t0) / 1000;
  const n = c.stream.messages;
  return {
    rate: n / seconds,
    seconds,
    cpuUs: (cpu / n) * 1e6,
    brokerCpuUs: (brokerCpu / n) * 1e6,
    emulatorCpuUs: (emulatorCpuSeconds / n) * 1e6,
    consumerCores: cpu / seconds,
    brokerCores: brokerCpu / seconds,
    publisherCores: published.cpuSeconds / ((published.ended - published.started) / 1000),
    publishSeconds: (published.ended - published.started) / 1000,
    commits: own0 && own1 ? commitStats(own0, own1) : undefined,
    intakeSeconds: intakeDone?.() === undefined ? undefined : (intakeDone()! - t0) / 1000,
  };
}

function commitStats(a: Record<string, number>, b: Record<string, number>) {
  const count = b.commits! - a.commits!;
  return { count, meanMs: ((b.commitSeconds! - a.commitSeconds!) / count) * 1000, messagesPerCommit: (b.received! - a.received!) / count };
}

/** A sample of the node's metrics text: `name value` lines, no labels. */
function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').pop()) : Number.NaN;
}

/** CPU seconds of the emulator (the gcloud launcher and the JVM below it). */
function emulatorCpu(emu: PubSubEmulator): number {
  const port = emu.host.split(':').pop();
  return processesWithArg(`--port=${port}`).reduce((sum, pid) => sum + treeCpuSeconds(pid), 0);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const best = (rs: PassResult[]) => rs.reduce((a, b) => (b.rate > a.rate ? b : a));
const fmt = (rate: number) => `${Math.round(rate).toLocaleString('en-US')} msg/s`;
const round2 = (x: number) => Number(x.toFixed(2));

export async function endToEnd(broker: TestMosquitto, emu: PubSubEmulator, size: E2eSize): Promise<CaseResult[]> {
  const dir = tempDir('e2e');
  const runs: Record<ConsumerName, PassResult[]> = { node: [], bridge: [], mosquitto_sub: [] };
  try {
    const c: Context = {
      broker,
      emu,
      size,
      stream: writeStream(dir, 'stream', size.messages, size.publishers, 0),
      warm: writeStream(dir, 'warm', size.warmup, size.publishers, size.messages),
      pass: 0,
    };
    const next = () => `${process.pid}-${c.pass++}`;
    await bridgePass(c, next()); // untimed: the emulator warms up
    for (let round = 0; round < size.rounds; round++) {
      const order: ConsumerName[] = round % 2 === 0 ? ['mosquitto_sub', 'bridge', 'node'] : ['node', 'bridge', 'mosquitto_sub'];
      for (const who of order) {
        const k = next();
        runs[who].push(who === 'node' ? await nodePass(c, k) : who === 'bridge' ? await bridgePass(c, k) : await subPass(c, k));
        process.stderr.write(`bench: e2e: ${who} ${fmt(runs[who].at(-1)!.rate)}, ${runs[who].at(-1)!.cpuUs.toFixed(1)} µs/msg\n`);
      }
    }
  } finally {
    cleanup(dir);
  }
  return rows(size, runs);
}

function rows(size: E2eSize, runs: Record<ConsumerName, PassResult[]>): CaseResult[] {
  const summary = (who: ConsumerName) => {
    const b = best(runs[who]);
    const mid = (f: (r: PassResult) => number) => median(runs[who].map(f));
    return { ...b, cpuUs: mid((r) => r.cpuUs), brokerCpuUs: mid((r) => r.brokerCpuUs), emulatorCpuUs: mid((r) => r.emulatorCpuUs) };
  };
  const node = summary('node');
  const bridge = summary('bridge');
  const sub = summary('mosquitto_sub');
  const describe = (s: ReturnType<typeof summary>) =>
    `${fmt(s.rate)}; ${s.cpuUs.toFixed(1)} µs CPU/msg (${s.consumerCores.toFixed(2)} cores); Mosquitto ${s.brokerCpuUs.toFixed(1)} µs/msg (${s.brokerCores.toFixed(2)} cores)` +
    (s === sub ? '' : `; emulator ${s.emulatorCpuUs.toFixed(1)} µs/msg`);
  const subWhat = `\`mosquitto_sub -q 1\` to /dev/null on the same stream: ${describe(sub)}`;
  const details: Record<string, number | string> = {
    messages: size.messages,
    publishers: size.publishers,
    rounds: size.rounds,
    warmup: size.warmup,
    cpus: os.cpus().length,
    nodeRate: Math.round(node.rate),
    bridgeRate: Math.round(bridge.rate),
    subRate: Math.round(sub.rate),
    nodeCpuUsPerMessage: round2(node.cpuUs),
    bridgeCpuUsPerMessage: round2(bridge.cpuUs),
    subCpuUsPerMessage: round2(sub.cpuUs),
    nodeBrokerCpuUsPerMessage: round2(node.brokerCpuUs),
    bridgeBrokerCpuUsPerMessage: round2(bridge.brokerCpuUs),
    subBrokerCpuUsPerMessage: round2(sub.brokerCpuUs),
    nodeEmulatorCpuUsPerMessage: round2(node.emulatorCpuUs),
    bridgeEmulatorCpuUsPerMessage: round2(bridge.emulatorCpuUs),
    nodeCores: round2(node.consumerCores),
    bridgeCores: round2(bridge.consumerCores),
    subCores: round2(sub.consumerCores),
    nodeIntakeRate: node.intakeSeconds === undefined ? Number.NaN : Math.round(size.messages / node.intakeSeconds),
    nodeCommits: node.commits?.count ?? Number.NaN,
    nodeCommitMeanMs: round2(node.commits?.meanMs ?? Number.NaN),
    nodeMessagesPerCommit: round2(node.commits?.messagesPerCommit ?? Number.NaN),
    publisherCores: round2(median(Object.values(runs).flat().map((r) => r.publisherCores))),
    publisherRate: Math.round(size.messages / median(Object.values(runs).flat().map((r) => r.publishSeconds))),
    nodeRuns: runs.node.map((r) => `${Math.round(r.rate)} msg/s ${r.cpuUs.toFixed(1)} µs, intake ${r.intakeSeconds === undefined ? '?' : Math.round(size.messages / r.intakeSeconds)} msg/s`).join(' / '),
    bridgeRuns: runs.bridge.map((r) => `${Math.round(r.rate)} msg/s ${r.cpuUs.toFixed(1)} µs`).join(' / '),
    subRuns: runs.mosquitto_sub.map((r) => `${Math.round(r.rate)} msg/s ${r.cpuUs.toFixed(1)} µs`).join(' / '),
  };
  const label = `e2e: ${size.publishers} QoS 1 publishers → Mosquitto → node → Pub/Sub emulator (${size.messages.toLocaleString('en-US')} messages live)`;
  const cpuRatio = node.cpuUs / bridge.cpuUs;
  return [
    {
      case: label,
      node: describe(node),
      baseline: subWhat,
      ratio: node.rate / sub.rate,
      goal: '≥ 0.95×',
      met: node.rate / sub.rate >= 0.95,
      details: { ...details, baselineRate: Math.round(sub.rate) },
    },
    {
      case: '… the non-durable bridge (MQTT.js, PUBACK on receipt, the same Publish RPC and batches, no spool)',
      node: describe(bridge),
      baseline: subWhat,
      ratio: bridge.rate / sub.rate,
      goal: 'report',
      met: null,
      details: { ...details, nodeRate: Math.round(bridge.rate), baselineRate: Math.round(sub.rate) },
    },
    {
      case: '… CPU per message: the node against the non-durable bridge',
      node: `${node.cpuUs.toFixed(1)} µs`,
      baseline: `${bridge.cpuUs.toFixed(1)} µs (the bridge, the same stream)`,
      ratio: cpuRatio,
      goal: '≤ 1.25×',
      met: cpuRatio <= 1.25,
      details: { ...details, baselineRate: Math.round(bridge.rate) },
    },
    {
      case: '… CPU per message of the node, absolute',
      node: `${node.cpuUs.toFixed(1)} µs`,
      baseline: '12 µs (the goal)',
      ratio: node.cpuUs / 12,
      goal: '≤ 12 µs',
      met: node.cpuUs <= 12,
      details: { ...details, baselineRate: Math.round(sub.rate) },
    },
  ];
}
