/**
 * The shared-subscription case: one, two and three nodes in external mode on one Mosquitto, sharing its topics
 * through `MQTT_SHARE_GROUP`, drain the same QoS 1 backlog into their spools. Each node count gets its own group
 * and topic; the members' sessions are made first (each node started and stopped once), then `n` messages are
 * published while they are away, so Mosquitto 2.0 queues them round-robin across the members' sessions, and then
 * every member starts at once. The rate is `n` over the time from the first member's subscriber connecting to the
 * last message committed on any of them (each node's `mqtt_ingest_messages_received_total`, polled). Reported
 * beside it: each member's share, the nodes' CPU per message (all members' process trees) and Mosquitto's CPU
 * per message over the same drain, so it is clear which process bounds the figure. These machines have 2 cores:
 * three nodes and the broker share them, so more nodes cannot add capacity here; on a cluster each node has its own.
 */
import os from 'node:os';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { spoolOnly, type CaseResult } from './cases.js';
import { cleanup, cpuSeconds, mosquittoPublish, pollCounter, startNode, treeCpuSeconds, waitForLog, type NodeProcess } from './lib.js';

const RECEIVED = 'mqtt_ingest_messages_received_total';

interface ShareRun {
  nodes: number;
  rate: number;
  seconds: number;
  shares: number[];
  nodeCpuUsPerMessage: number;
  brokerCpuUsPerMessage: number;
}

export async function sharedSubscriptions(n: number): Promise<CaseResult[]> {
  // Its own broker, with persistence: the members' sessions and their queues are what is measured.
  const broker = await startMosquitto();
  const runs: ShareRun[] = [];
  try {
    for (const k of [1, 2, 3]) runs.push(await drainShared(broker.port, broker.url, broker.proc.pid!, k, n));
  } finally {
    await broker.stop();
    cleanup(broker.dataDir);
  }
  const one = runs[0]!;
  const fmt = (r: number) => `${Math.round(r).toLocaleString('en-US')} msg/s`;
  const describe = (r: ShareRun) =>
    `${fmt(r.rate)}; shares ${r.shares.map((s) => `${Math.round((s / n) * 100)}%`).join(' / ')}; ${r.nodeCpuUsPerMessage.toFixed(1)} µs CPU/msg in the nodes, ${r.brokerCpuUsPerMessage.toFixed(1)} in Mosquitto`;
  return runs.slice(1).map((r) => ({
    case: `${r.nodes} nodes sharing a QoS 1 backlog (\`MQTT_SHARE_GROUP\`, one Mosquitto) → spool`,
    node: describe(r),
    baseline: `${describe(one)} (one node, the same backlog)`,
    ratio: r.rate / one.rate,
    goal: 'report',
    met: null,
    details: {
      messages: n,
      nodes: r.nodes,
      nodeRate: Math.round(r.rate),
      baselineRate: Math.round(one.rate),
      shares: r.shares.join(' / '),
      nodeCpuUsPerMessage: Number(r.nodeCpuUsPerMessage.toFixed(2)),
      brokerCpuUsPerMessage: Number(r.brokerCpuUsPerMessage.toFixed(2)),
      oneNodeCpuUsPerMessage: Number(one.nodeCpuUsPerMessage.toFixed(2)),
      cpus: os.cpus().length,
    },
  }));
}

async function drainShared(port: number, url: string, brokerPid: number, k: number, n: number): Promise<ShareRun> {
  const filter = `bench/share${k}/#`;
  const env = (i: number) => ({ ...spoolOnly, MQTT_BROKER: url, MQTT_TOPICS: filter, MQTT_SHARE_GROUP: `bench${k}`, MQTT_CLIENT_ID: `bench-share-${k}-${i}` });
  // The members' sessions first: each node subscribes once and stops, so the backlog queues for all of them.
  const dirs: string[] = [];
  for (let i = 0; i < k; i++) {
    const first = await startNode(env(i));
    await first.waitReady();
    await first.stop();
    dirs.push(first.dataDir);
  }
  await mosquittoPublish(port, `bench/share${k}/p`, 0, n);
  const nodes: NodeProcess[] = [];
  try {
    const brokerCpu0 = cpuSeconds(brokerPid);
    for (let i = 0; i < k; i++) nodes.push(await startNode(env(i), { dataDir: dirs[i] }));
    // CPU from each member's subscriber connecting (its start-up excluded) to the end of the drain.
    const cpu0 = nodes.map(() => 0);
    const connected = await Promise.all(
      nodes.map((node, i) =>
        waitForLog(node, 'subscriber connected').then((t) => {
          cpu0[i] = treeCpuSeconds(node.proc.pid!);
          return t;
        }),
      ),
    );
    const t0 = Math.min(...connected);
    // Each member drains its share; the run ends at the last commit on any of them.
    const counts = nodes.map(() => 0);
    let last = t0;
    const done = await Promise.all(
      nodes.map((node, i) =>
        pollCounter(
          node,
          RECEIVED,
          (v) => {
            counts[i] = v;
            return counts.reduce((a, b) => a + b, 0) >= n;
          },
          { intervalMs: 10, timeoutMs: 300_000 },
        ),
      ),
    );
    for (const tl of done) {
      const end = tl.find((p) => p.v === tl[tl.length - 1]!.v);
      if (end && end.t > last) last = end.t;
    }
    const brokerCpu = cpuSeconds(brokerPid) - brokerCpu0;
    const nodeCpu = nodes.reduce((sum, node, i) => sum + treeCpuSeconds(node.proc.pid!) - cpu0[i]!, 0);
    const shares = done.map((tl) => tl[tl.length - 1]!.v);
    const total = shares.reduce((a, b) => a + b, 0);
    if (total !== n) throw new Error(`share case: ${k} nodes committed ${total} of ${n} messages (${shares.join(' + ')})`);
    const seconds = (last - t0) / 1000;
    return { nodes: k, rate: n / seconds, seconds, shares, nodeCpuUsPerMessage: (nodeCpu / n) * 1e6, brokerCpuUsPerMessage: (brokerCpu / n) * 1e6 };
  } finally {
    for (const node of nodes) await node.stop();
    for (const d of dirs) cleanup(d);
  }
}
