/**
 * The fleet case: the product's own load generator, `mqtt-ingest simulate`, run as a child process exactly as an
 * operator runs it (a fleet of `devices` devices, QoS 1, a sensor template with a sequence number and random walks,
 * `--count` messages in all, `--json` summary), against three targets in the same run: the node in embedded mode,
 * the node in supervised Mosquitto mode (both with the file sink on: the default sink of a node without a cloud
 * sink), and a bare Mosquitto with no subscriber, which acknowledges and drops: the rate the same fleet reaches when
 * nothing is stored. Each device's rate is set far above what one machine takes, so the fleet runs as fast as its
 * windows (100 publishes unfinished per device) and the broker's acknowledgements allow.
 *
 * Every target is timed the same way, by the simulator's summary: acknowledged over its seconds (from the first
 * publish, once every device has connected, to the last acknowledgement). The node's rate is to its last commit
 * (`mqtt_ingest_messages_received_total` polled every 20 ms): in embedded mode the PUBACK follows the commit, so it
 * is the ack rate; in mosquitto mode Mosquitto acknowledges on receipt, and the time the node still commits after the
 * summary is added to the summary's seconds. Reported beside it: the node's CPU per message (its process tree, with
 * Mosquitto in mosquitto mode, from before the simulator starts to the last line in the file sink: the devices'
 * connects and the file sink's writes included), the simulator's own CPU, and the template's `ts` (epoch ms at
 * publish) against the file sink's `received_at` (ms). The case fails unless the simulator reports every message
 * acknowledged and the spool and the file sink each hold exactly the acknowledged messages: as many lines as
 * acknowledged, every device's sequence numbers 1 … k once each. An untimed run into the bare Mosquitto goes first;
 * then the targets run in turn, the order reversed each round.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { startMosquitto, type TestMosquitto } from '../test/helpers/mosquitto.js';
import { readFileSink } from '../test/helpers/file-output.js';
import { BIN, ROOT, baseEnv } from '../test/helpers/node-process.js';
import type { Summary } from '../src/simulate/pacing.js';
import { spoolOnly, type CaseResult } from './cases.js';
import { cleanup, cpuSeconds, nowMs, percentile, rateFromTimeline, readCounter, startNode, treeCpuSeconds, type NodeProcess } from './lib.js';

const RECEIVED = 'mqtt_ingest_messages_received_total';
const DELIVERED = 'mqtt_ingest_messages_delivered_total';
/** Messages a second per device: an offered load no target reaches, so the windows set the pace. */
const RATE = 1000;
const FLEET_TOPIC = 'plant/pit-north/{device}/telemetry';
/** A pressure transmitter's reading, about 175 bytes rendered. */
const FLEET_PAYLOAD =
  '{"device":"{device}","seq":{seq},"ts":{ts},"site":"pit-north","bar":{walk:bar:1.2:0.01},"temp_c":{walk:temp:21.5:0.1},' +
  '"flow_lpm":{walk:flow:40:0.5},"vibration_mm_s":{walk:vib:2.0:0.05},"battery_v":{walk:battery:3.6:0.01},"status":"ok","fw":"2.4.1"}';

export interface FleetCaseSize {
  devices: number;
  /** Messages per run, all devices together (`--count`). */
  messages: number;
  /** Runs of each target, alternating the order; the best rate of each counts, the median CPU. */
  rounds: number;
}

interface SimulateRun {
  summary: Summary;
  /** CPU seconds of the simulator process, start to exit. */
  cpuSeconds: number;
  wallSeconds: number;
  /** When the summary line came (the clock of nowMs). */
  summaryAt: number;
}

/**
 * Runs `mqtt-ingest simulate … --json` to its exit. It starts through `sh`, which raises the soft open-file limit (a
 * socket per device) and, once the simulator has exited, writes its own /proc stat to fd 3: the CPU of the children
 * it waited for (cutime, cstime), which is the simulator's to its last instruction.
 */
function runSimulate(url: string, size: FleetCaseSize): Promise<SimulateRun> {
  const args = ['simulate', '--url', url, '--devices', String(size.devices), '--rate', String(RATE), '--qos', '1', '--count', String(size.messages)];
  args.push('--topic', FLEET_TOPIC, '--payload', FLEET_PAYLOAD, '--json');
  const script = 'ulimit -S -n "$(ulimit -H -n)" 2>/dev/null; "$@"; code=$?; cat /proc/$$/stat >&3; exit $code';
  const started = nowMs();
  const proc = spawn('sh', ['-c', script, 'sh', process.execPath, BIN, ...args], { cwd: ROOT, env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let stat = '';
  let summaryAt = 0;
  proc.stdout!.on('data', (d) => {
    stdout += d;
    summaryAt = nowMs();
  });
  proc.stderr!.on('data', (d) => (stderr += d));
  proc.stdio[3]!.on('data', (d) => (stat += d));
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (code) => {
      const wallSeconds = (nowMs() - started) / 1000;
      let summary: Summary;
      try {
        summary = JSON.parse(stdout.trim().split('\n').pop() ?? '') as Summary;
      } catch {
        return reject(new Error(`simulate against ${url} exited ${code} without a JSON summary:\n${stdout}${stderr}`));
      }
      if (code !== 0 || !summary.ok) return reject(new Error(`simulate against ${url} exited ${code}: ${JSON.stringify(summary)}\n${stderr}`));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      resolve({ summary, cpuSeconds: (Number(fields[13]) + Number(fields[14])) / 100, wallSeconds, summaryAt });
    });
  });
}

interface Run {
  /** Acknowledged messages a second, as the fleet saw them (the summary). */
  ackRate: number;
  /**
   * Messages a second to the last commit: the acknowledged over the summary's seconds plus however long after the
   * summary the node was still committing (0 when the poll saw every message committed first). Bare Mosquitto: the
   * ack rate, nothing is stored.
   */
  commitRate: number;
  /** How long after the summary the last commit was seen (ms, polled every 20 ms). */
  commitLagMs?: number;
  /** The commit rate from the polls alone: from the first that saw a message to the first that saw them all. */
  polledCommitRate?: number;
  /** CPU per message of the target: the node's process tree, or the bare Mosquitto. */
  cpuUs: number;
  simulateCores: number;
  acknowledged: number;
  committed?: number;
  inFileSink?: number;
  tsToReceivedP50Ms?: number;
  tsToReceivedP99Ms?: number;
}

const ackRate = (s: Summary) => s.acknowledged / s.seconds;
const cores = (sim: SimulateRun) => sim.cpuSeconds / sim.wallSeconds;

async function bareRun(broker: TestMosquitto, size: FleetCaseSize): Promise<Run> {
  const pid = broker.proc.pid as number;
  const before = cpuSeconds(pid);
  const sim = await runSimulate(broker.url, size);
  const { summary } = sim;
  return { ackRate: ackRate(summary), commitRate: ackRate(summary), cpuUs: ((cpuSeconds(pid) - before) * 1e6) / summary.acknowledged, simulateCores: cores(sim), acknowledged: summary.acknowledged };
}

/** Every device's sequence numbers 1 … k once each, and k summing to `acknowledged`: the exact set the fleet sent. */
function checkRecords(records: ReturnType<typeof readFileSink>, acknowledged: number, mode: string): { p50: number; p99: number } {
  const seqs = new Map<string, Set<number>>();
  const lags: number[] = [];
  for (const r of records) {
    const p = JSON.parse(r.payload) as { device: string; seq: number; ts: number };
    const set = seqs.get(p.device) ?? new Set<number>();
    set.add(p.seq);
    seqs.set(p.device, set);
    lags.push(Date.parse(r.received_at) - p.ts);
  }
  const distinct = [...seqs.values()].reduce((n, s) => n + s.size, 0);
  const gaps = [...seqs].filter(([, s]) => Math.max(...s) !== s.size).map(([d]) => d);
  if (records.length !== acknowledged || distinct !== acknowledged || gaps.length > 0) {
    throw new Error(
      `fleet (${mode}): simulate acknowledged ${acknowledged}, the file sink holds ${records.length} lines, ${distinct} distinct messages` +
        (gaps.length > 0 ? `, sequence gaps for ${gaps.slice(0, 5).join(', ')}` : ''),
    );
  }
  lags.sort((a, b) => a - b);
  return { p50: percentile(lags, 50), p99: percentile(lags, 99) };
}

async function nodeRun(mode: 'embedded' | 'mosquitto', size: FleetCaseSize): Promise<Run> {
  const node: NodeProcess = await startNode({ ...spoolOnly, FILE_SINK: 'on', MQTT_BROKER_MODE: mode });
  try {
    await node.waitReady();
    const pid = node.proc.pid as number;
    const cpuBefore = treeCpuSeconds(pid);
    let acknowledged: number | undefined;
    // The commits are polled while the fleet publishes, until they reach what the fleet saw acknowledged.
    const timeline: { t: number; v: number }[] = [];
    const polling = (async () => {
      let deadline = Infinity;
      for (;;) {
        const v = await readCounter(node, RECEIVED);
        timeline.push({ t: nowMs(), v });
        if (acknowledged !== undefined && (v >= acknowledged || Date.now() > deadline)) return v;
        if (acknowledged !== undefined && deadline === Infinity) deadline = Date.now() + 60_000;
        if (node.proc.exitCode !== null) throw new Error(`the node (${mode}) exited (${node.proc.exitCode}):\n${node.logs.slice(-10).join('\n')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    polling.catch(() => undefined); // awaited below; a node that exits while the fleet runs must not crash the bench first
    let sim: SimulateRun;
    try {
      sim = await runSimulate(`mqtt://127.0.0.1:${node.mqttPort}`, size);
    } finally {
      acknowledged ??= -1; // ends the poll when the simulator failed
    }
    acknowledged = sim.summary.acknowledged;
    const committed = await polling;
    // Then the file sink, until it has delivered as many (or a minute has passed without reaching them).
    const deadline = Date.now() + 60_000;
    while ((await readCounter(node, DELIVERED, 'sink="file"')) < committed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const cpu = treeCpuSeconds(pid) - cpuBefore;
    if (committed !== acknowledged) throw new Error(`fleet (${mode}): simulate acknowledged ${acknowledged}, the spool committed ${committed}`);
    const allSeen = timeline.find((p) => p.v >= committed)!;
    const lagMs = Math.max(0, allSeen.t - sim.summaryAt);
    const records = readFileSink(path.join(node.dataDir, 'out'));
    const lag = checkRecords(records, acknowledged, mode);
    return {
      ackRate: ackRate(sim.summary),
      commitRate: acknowledged / (sim.summary.seconds + lagMs / 1000),
      commitLagMs: lagMs,
      polledCommitRate: rateFromTimeline(timeline.slice(0, timeline.indexOf(allSeen) + 1), committed).rate,
      cpuUs: (cpu * 1e6) / acknowledged,
      simulateCores: cores(sim),
      acknowledged,
      committed,
      inFileSink: records.length,
      tsToReceivedP50Ms: lag.p50,
      tsToReceivedP99Ms: lag.p99,
    };
  } finally {
    await node.stop();
    cleanup(node.dataDir);
  }
}

const fmt = (rate: number) => `${Math.round(rate).toLocaleString('en-US')} msg/s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const best = (rs: Run[]) => rs.reduce((a, b) => (b.commitRate > a.commitRate ? b : a));

export async function fleet(size: FleetCaseSize): Promise<CaseResult[]> {
  const broker = await startMosquitto({ persistence: false });
  const runs = { bare: [] as Run[], embedded: [] as Run[], mosquitto: [] as Run[] };
  try {
    // Untimed, a tenth of the messages into the bare Mosquitto: whatever the machine was still doing (the bench's
    // start-up) and the simulator's first load from disk are not charged to the first timed run.
    await runSimulate(broker.url, { ...size, messages: Math.max(size.devices, Math.ceil(size.messages / 10)) });
    for (let round = 0; round < size.rounds; round++) {
      const order = round % 2 === 0 ? (['bare', 'embedded', 'mosquitto'] as const) : (['mosquitto', 'embedded', 'bare'] as const);
      for (const target of order) runs[target].push(target === 'bare' ? await bareRun(broker, size) : await nodeRun(target, size));
    }
  } finally {
    await broker.stop();
    cleanup(broker.dataDir);
  }
  const bare = best(runs.bare);
  const baseline = `${fmt(bare.ackRate)} acknowledged, ${median(runs.bare.map((r) => r.cpuUs)).toFixed(1)} µs CPU/msg (the same \`simulate\` run into a bare Mosquitto, no subscriber)`;
  const label = `fleet of ${size.devices.toLocaleString('en-US')} devices (\`mqtt-ingest simulate\`, QoS 1, ${size.messages.toLocaleString('en-US')} messages) → file sink`;
  const row = (mode: 'embedded' | 'mosquitto', name: string): CaseResult => {
    const r = best(runs[mode]);
    const cpu = median(runs[mode].map((x) => x.cpuUs));
    const rate = mode === 'mosquitto' ? `${fmt(r.commitRate)} to the last commit (acknowledged at ${fmt(r.ackRate)})` : `${fmt(r.commitRate)} acknowledged and committed`;
    return {
      case: name,
      node: `${rate}; ${r.acknowledged.toLocaleString('en-US')} acknowledged = in the spool = in the file sink; ${cpu.toFixed(1)} µs CPU/msg${mode === 'mosquitto' ? ' with Mosquitto' : ''}`,
      baseline,
      ratio: r.commitRate / bare.ackRate,
      goal: 'report',
      met: null,
      details: {
        devices: size.devices,
        messages: size.messages,
        ratePerDevice: RATE,
        rounds: size.rounds,
        acknowledged: r.acknowledged,
        committed: r.committed ?? NaN,
        inFileSink: r.inFileSink ?? NaN,
        nodeRate: r.commitRate,
        nodeAckRate: r.ackRate,
        nodePolledCommitRate: r.polledCommitRate ?? NaN,
        commitLagMs: r.commitLagMs ?? NaN,
        baselineRate: bare.ackRate,
        nodeCpuUsPerMessage: cpu,
        bareMosquittoCpuUsPerMessage: median(runs.bare.map((x) => x.cpuUs)),
        simulateCores: r.simulateCores,
        bareSimulateCores: bare.simulateCores,
        tsToReceivedP50Ms: r.tsToReceivedP50Ms ?? NaN,
        tsToReceivedP99Ms: r.tsToReceivedP99Ms ?? NaN,
        nodeRuns: runs[mode].map((x) => Math.round(x.commitRate)).join(' / '),
        baselineRuns: runs.bare.map((x) => Math.round(x.ackRate)).join(' / '),
      } as unknown as Record<string, number>,
    };
  };
  return [row('embedded', `${label}: embedded broker`), row('mosquitto', '… the same fleet, supervised Mosquitto mode')];
}
