/**
 * The broker-scale case: the embedded broker holding many idle connections (connected, keep-alive 60 s, no traffic)
 * while more clients publish QoS 1 at a steady few messages a second each. Reported: whether the node stayed ready
 * (GET /readyz every 250 ms from the first connect to the last PUBACK, and the idle clients it dropped), publish →
 * PUBACK at the publishers, and the node's RSS per idle connection (RSS with the idle clients connected minus RSS
 * with none, over their count). The embedded broker sends a PUBACK only after the spool commit, so publish → PUBACK
 * is an upper bound of publish → commit. The clients run in load processes of their own (one for the idle clients,
 * `publisherProcesses` for the publishers) and connect in batches of `batch`, so neither the generator nor a connect
 * storm is what is measured; their event-loop delay and CPU are reported beside the figures. No sink is on.
 */
import { spoolOnly, type CaseResult } from './cases.js';
import { cleanup, cpuSeconds, nowMs, openFilesLimit, percentile, rssMb, startNode, type NodeProcess } from './lib.js';
import { startLoad, type LoadProcess, type LoadReport } from './load-process.js';

const RECEIVED = 'mqtt_ingest_messages_received_total';
const COMMIT_SECONDS = 'mqtt_ingest_spool_commit_seconds';

export interface BrokerScaleSize {
  idle: number;
  publishers: number;
  /** Messages a second per publisher. */
  rate: number;
  seconds: number;
  /** Clients connecting together, each batch after the previous one's CONNACKs. */
  batch: number;
  publisherProcesses: number;
}

/** Asks /readyz every `intervalMs` until stopped; an answer other than 200, or none within 2 s, counts as not ready. */
function pollReadiness(node: NodeProcess, intervalMs: number) {
  const stats = { answers: 0, notReady: 0, slowestMs: 0, firstProblem: '' };
  let polling = true;
  const loop = (async () => {
    while (polling) {
      const started = nowMs();
      try {
        const res = await fetch(`http://127.0.0.1:${node.httpPort}/readyz`, { signal: AbortSignal.timeout(2000) });
        const body = await res.text();
        if (res.status !== 200) {
          stats.notReady += 1;
          stats.firstProblem ||= `${res.status}: ${body.slice(0, 300)}`;
        }
      } catch (err) {
        stats.notReady += 1;
        stats.firstProblem ||= (err as Error).message;
      }
      stats.answers += 1;
      stats.slowestMs = Math.max(stats.slowestMs, nowMs() - started);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    stats,
    async stop() {
      polling = false;
      await loop;
      return stats;
    },
  };
}

/** The node's RSS (MB) once settled: the median of five samples, 200 ms apart, after two quiet seconds. */
async function settledRss(pid: number): Promise<number> {
  await new Promise((r) => setTimeout(r, 2000));
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(rssMb(pid));
    await new Promise((r) => setTimeout(r, 200));
  }
  return samples.sort((a, b) => a - b)[2]!;
}

/** Cumulative bucket counts of a histogram in a /metrics text, by upper bound in seconds. */
function buckets(text: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"[^}]*\\} (\\S+)$`, 'gm'))) {
    out.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  }
  return out;
}

/** The upper bound (ms) of the bucket holding quantile `q` of what a histogram counted between two scrapes. */
function bucketQuantileMs(before: string, after: string, name: string, q: number): number {
  const a = buckets(before, name);
  const b = [...buckets(after, name)].map(([le, n]) => [le, n - (a.get(le) ?? 0)] as const).sort((x, y) => x[0] - y[0]);
  const total = b[b.length - 1]?.[1] ?? 0;
  const hit = b.find(([, n]) => n >= q * total);
  return hit && total > 0 ? hit[0] * 1000 : NaN;
}

/** A gauge's value in a /metrics text. */
function gauge(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

export async function brokerScale(size: BrokerScaleSize): Promise<CaseResult[]> {
  const connections = size.idle + size.publishers;
  // MQTT_MAX_CONNECTIONS (per listener; default 10,000) must let every client in.
  const maxConnections = Math.max(10_000, connections + 100);
  const node = await startNode({ ...spoolOnly, MQTT_BROKER_MODE: 'embedded', MQTT_MAX_CONNECTIONS: String(maxConnections) });
  const loads: LoadProcess[] = [];
  let readiness: ReturnType<typeof pollReadiness> | undefined;
  try {
    await node.waitReady();
    const pid = node.proc.pid as number;
    const url = `mqtt://127.0.0.1:${node.mqttPort}`;
    const nodeFiles = openFilesLimit(pid);
    if (nodeFiles < connections + 100) {
      throw new Error(`the node may open ${nodeFiles} files, too few for ${connections} connections: raise \`ulimit -n\` before the bench`);
    }
    const rssNone = await settledRss(pid);
    readiness = pollReadiness(node, 250);

    const idle = startLoad({ url, mode: 'idle', clients: size.idle, batch: size.batch, keepalive: 60, prefix: 'bench-idle' });
    loads.push(idle);
    const idleConnected = await idle.next('connected');
    const rssIdle = await settledRss(pid);

    const shares = Array.from({ length: size.publisherProcesses }, (_, k) =>
      Math.floor(size.publishers / size.publisherProcesses) + (k < size.publishers % size.publisherProcesses ? 1 : 0),
    ).filter((n) => n > 0);
    const publishers = shares.map((clients, k) =>
      startLoad({ url, mode: 'steady', clients, rate: size.rate, seconds: size.seconds, batch: size.batch, keepalive: 60, prefix: `bench-steady-${k}` }),
    );
    loads.push(...publishers);
    const pubConnected = await Promise.all(publishers.map((p) => p.next('connected')));
    // The scrape also resets the node's event-loop lag histogram (prom-client), so the next one covers the publishing.
    const metricsBefore = await node.metrics();
    const receivedBefore = await node.metric(RECEIVED);
    const cpuBefore = cpuSeconds(pid);
    const started = nowMs();
    for (const p of publishers) p.send('go');
    const done = await Promise.all(publishers.map((p) => p.next('done', (size.seconds + 120) * 1000)));
    const steadySeconds = (nowMs() - started) / 1000;
    const nodeCores = (cpuSeconds(pid) - cpuBefore) / steadySeconds;
    const metricsAfter = await node.metrics();
    const committed = (await node.metric(RECEIVED)) - receivedBefore;
    const ready = await readiness.stop();
    readiness = undefined;
    const idleEnded = await idle.stop();

    const sum = (key: string, reports: LoadReport[] = done) => reports.reduce((s, r) => s + Number(r[key]), 0);
    const latencies = done.flatMap((r) => r.latencies as number[]).sort((a, b) => a - b);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    const lost = Number(idleEnded?.lost ?? NaN);
    const perIdleKiB = ((rssIdle - rssNone) * 1024) / size.idle;
    const label = `${size.idle.toLocaleString('en-US')} idle clients + ${size.publishers.toLocaleString('en-US')} publishing ${size.rate} msg/s each (QoS 1, embedded broker)`;
    const details = {
      idleClients: size.idle,
      publishers: size.publishers,
      ratePerPublisher: size.rate,
      seconds: size.seconds,
      maxConnections,
      nodeOpenFiles: nodeFiles,
      loadOpenFiles: Math.min(Number(idleConnected.openFiles), ...pubConnected.map((c) => Number(c.openFiles))),
      idleConnectSeconds: Number(idleConnected.connectMs) / 1000,
      publisherConnectSeconds: Math.max(...pubConnected.map((c) => Number(c.connectMs))) / 1000,
      readyzAnswers: ready.answers,
      readyzNotReady: ready.notReady,
      readyzSlowestMs: ready.slowestMs,
      readyzFirstProblem: ready.firstProblem || 'none',
      idleClientsLost: lost,
      sent: sum('sent'),
      acked: sum('acked'),
      failed: sum('failed'),
      publishersDropped: sum('dropped'),
      committed,
      achievedRate: sum('acked') / steadySeconds,
      latencySamples: latencies.length,
      latencyP50Ms: p50,
      latencyP99Ms: p99,
      latencyMaxMs: latencies[latencies.length - 1] ?? NaN,
      nodeCores,
      nodeCommitP99BucketMs: bucketQuantileMs(metricsBefore, metricsAfter, COMMIT_SECONDS, 0.99),
      // prom-client samples every 10 ms and reports the time between samples.
      nodeLoopDelayP99Ms: Math.max(0, gauge(metricsAfter, 'mqtt_ingest_process_nodejs_eventloop_lag_p99_seconds') * 1000 - 10),
      loadCores: sum('cpuSeconds') / steadySeconds,
      loadLoopDelayP99Ms: Math.max(...done.map((r) => Number(r.loopDelayP99Ms))),
      rssNoClientsMb: rssNone,
      rssIdleMb: rssIdle,
      rssPerIdleKiB: perIdleKiB,
    } as unknown as Record<string, number>;
    const staysReady = ready.notReady === 0 && lost === 0 && sum('dropped') === 0 && sum('failed') === 0;
    return [
      {
        case: `${label}: readiness`,
        node: `${ready.notReady} of ${ready.answers} /readyz answers not ready; ${lost} of ${size.idle.toLocaleString('en-US')} idle clients and ${sum('dropped')} publishers dropped`,
        baseline: 'none',
        ratio: null,
        goal: 'ready throughout, no client dropped',
        met: staysReady,
        details,
      },
      {
        case: '… publish → PUBACK at the publisher (the PUBACK follows the commit: an upper bound of publish → commit)',
        node: `p50 ${p50.toFixed(1)} / p99 ${p99.toFixed(1)} ms (${latencies.length.toLocaleString('en-US')} messages); the node's commits p99 ≤ ${details.nodeCommitP99BucketMs} ms; event-loop delay p99 of the node ${Number(details.nodeLoopDelayP99Ms).toFixed(0)} ms, of the publishers' processes ${Number(details.loadLoopDelayP99Ms).toFixed(0)} ms`,
        baseline: 'none',
        ratio: null,
        goal: 'p99 < 20 ms',
        met: p99 < 20,
        details,
      },
      {
        case: '… node RSS per idle connection',
        node: `${perIdleKiB.toFixed(1)} KiB`,
        baseline: `${rssNone.toFixed(0)} MB with no client, ${rssIdle.toFixed(0)} MB with ${size.idle.toLocaleString('en-US')} idle`,
        ratio: rssIdle / rssNone,
        goal: 'report',
        met: null,
        details,
      },
    ];
  } finally {
    await readiness?.stop();
    for (const load of loads) await load.stop();
    await node.stop();
    cleanup(node.dataDir);
  }
}
