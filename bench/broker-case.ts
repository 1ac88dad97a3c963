/**
 * The broker case: QoS 1 publishers (MQTT.js 5, in a load process of their own) publishing 200-byte JSON as fast as
 * their in-flight window allows, into the node's embedded broker against its supervised Mosquitto, for 4, 16 and 64
 * publishers over MQTT 3.1.1 and 5. No sink is on (`FILE_SINK=off`): rows stay in the spool, so no sink bounds the
 * figure. Both modes are timed the same way, from the first publish to the poll of
 * `mqtt_ingest_messages_received_total` (messages committed to the spool) that sees every message: in the embedded
 * mode a PUBACK follows the commit, while Mosquitto acknowledges on receipt and the node commits after, so the rate to
 * the last PUBACK is reported beside it. CPU per message is the node's process tree (the node, and in the mosquitto
 * mode its Mosquitto) from the first publish to the last commit; the load process's own CPU is reported so a loaded
 * generator can be told from a slow node. Each run first sends a tenth of its messages (at most 10,000) untimed, so
 * neither mode is timed while its code is still being compiled. The first publish is timed by the load process and
 * the last commit by this one, on clocks taken from the same system clock.
 */
import { result, spoolOnly, type CaseResult } from './cases.js';
import { cleanup, nowMs, pollCounter, startNode, treeCpuSeconds } from './lib.js';
import { startLoad, type LoadProcess } from './load-process.js';

const RECEIVED = 'mqtt_ingest_messages_received_total';
const PUBLISHERS = [4, 16, 64] as const;
const VERSIONS = [4, 5] as const;

export interface BrokerCaseSize {
  /** Messages per run, shared by the publishers. */
  messages: number;
  /** Runs of each mode per cell, alternating which mode goes first; the best rate of each counts. */
  rounds: number;
  /** QoS 1 publishes each publisher keeps in flight (at most the broker's Receive Maximum with MQTT 5). */
  window: number;
}

interface Run {
  commitRate: number;
  pubackRate: number;
  cpuUs: number;
  /** CPU of the load process over the run, in cores. */
  loadCores: number;
  receiveMaximum: number | null;
}

async function run(mode: 'embedded' | 'mosquitto', publishers: number, version: 4 | 5, size: BrokerCaseSize): Promise<Run> {
  const node = await startNode({ ...spoolOnly, MQTT_BROKER_MODE: mode });
  let load: LoadProcess | undefined;
  try {
    await node.waitReady();
    const total = Math.ceil(size.messages / publishers) * publishers;
    const warmup = Math.ceil(Math.min(10_000, size.messages / 10) / publishers) * publishers;
    load = startLoad({
      url: `mqtt://127.0.0.1:${node.mqttPort}`,
      mode: 'burst',
      clients: publishers,
      version,
      messages: total,
      warmup,
      window: size.window,
      prefix: `bench-broker-${mode}-${version}`,
    });
    const connected = await load.next('connected', 120_000);
    // Mosquitto acknowledged the warm-up on receipt: the timing starts once the node has committed it.
    await pollCounter(node, RECEIVED, (v) => v >= warmup, { intervalMs: 10 });
    const pid = node.proc.pid as number;
    const cpuBefore = treeCpuSeconds(pid);
    load.send('go');
    // A publisher that loses its connection ends the run at once rather than at the poll's timeout.
    const failure = load.next('no report but an error');
    failure.catch(() => undefined);
    const tl = await Promise.race([pollCounter(node, RECEIVED, (v) => v >= warmup + total, { intervalMs: 10 }), failure as Promise<never>]);
    const committedAt = tl[tl.length - 1].t;
    const cpu = treeCpuSeconds(pid) - cpuBefore;
    const done = await load.next('done');
    const first = done.first as number;
    return {
      commitRate: total / ((committedAt - first) / 1000),
      pubackRate: total / (((done.last as number) - first) / 1000),
      cpuUs: (cpu * 1e6) / total,
      loadCores: (done.cpuSeconds as number) / ((Math.max(committedAt, done.last as number) - first) / 1000),
      receiveMaximum: connected.receiveMaximum as number | null,
    };
  } finally {
    await load?.stop();
    await node.stop();
    cleanup(node.dataDir);
  }
}

const fmt = (rate: number) => `${Math.round(rate).toLocaleString('en-US')} msg/s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function brokerModes(size: BrokerCaseSize): Promise<CaseResult[]> {
  const rows: CaseResult[] = [];
  for (const publishers of PUBLISHERS) {
    for (const version of VERSIONS) {
      const runs = { embedded: [] as Run[], mosquitto: [] as Run[] };
      for (let round = 0; round < size.rounds; round++) {
        const order = round % 2 === 0 ? (['embedded', 'mosquitto'] as const) : (['mosquitto', 'embedded'] as const);
        for (const mode of order) runs[mode].push(await run(mode, publishers, version, size));
      }
      const best = (rs: Run[]) => rs.reduce((a, b) => (b.commitRate > a.commitRate ? b : a));
      const cpu = (rs: Run[]) => median(rs.map((r) => r.cpuUs));
      const emb = best(runs.embedded);
      const mos = best(runs.mosquitto);
      const protocol = version === 4 ? '3.1.1' : '5';
      const row = result(`${publishers} QoS 1 publishers, MQTT ${protocol} → spool: embedded broker`, emb.commitRate, mos.commitRate, 'supervised Mosquitto mode', 1.0, {
        messages: Math.ceil(size.messages / publishers) * publishers,
        publishers,
        protocolVersion: version,
        window: size.window,
        embeddedRate: emb.commitRate,
        mosquittoRate: mos.commitRate,
        embeddedPubackRate: emb.pubackRate,
        mosquittoPubackRate: mos.pubackRate,
        embeddedCpuUsPerMessage: cpu(runs.embedded),
        mosquittoCpuUsPerMessage: cpu(runs.mosquitto),
        embeddedLoadCores: emb.loadCores,
        mosquittoLoadCores: mos.loadCores,
        embeddedReceiveMaximum: emb.receiveMaximum ?? 'none',
        mosquittoReceiveMaximum: mos.receiveMaximum ?? 'none',
        embeddedRuns: runs.embedded.map((r) => Math.round(r.commitRate)).join(' / '),
        mosquittoRuns: runs.mosquitto.map((r) => Math.round(r.commitRate)).join(' / '),
      } as unknown as Record<string, number>);
      rows.push({
        ...row,
        node: `${fmt(emb.commitRate)} committed, ${cpu(runs.embedded).toFixed(1)} µs CPU/msg`,
        baseline: `${fmt(mos.commitRate)} committed (last PUBACK at ${fmt(mos.pubackRate)}), ${cpu(runs.mosquitto).toFixed(1)} µs CPU/msg with Mosquitto (supervised Mosquitto mode)`,
      });
    }
  }
  return rows;
}
