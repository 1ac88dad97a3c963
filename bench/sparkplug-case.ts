/**
 * The Sparkplug case (docs/sparkplug.md): a spool backlog of DDATA messages of 20 metrics each (aliases only, after
 * their NBIRTH and DBIRTH) delivered by a Sparkplug route to the local BigQuery server, one row per metric; against
 * the same node and backlog without a routes file (one raw row per message). Reported: rows/s, the node process's
 * CPU per metric, and, in this process, what decoding alone costs per metric (protobuf, alias resolution left out,
 * value conversion and the row). Most of the node's CPU per metric goes to the BigQuery client preparing each
 * insertAll request (it deep-copies the body and walks every cell for a project-id token), not to Sparkplug.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Spool } from '../src/spool/spool.js';
import { decodePayload } from '../src/sparkplug/payload.js';
import { sparkplugRows } from '../src/sparkplug/rows.js';
import { parseSparkplugTopic } from '../src/sparkplug/topic.js';
import type { BirthMetric } from '../src/sparkplug/types.js';
import { startBigQueryServer } from '../test/helpers/bigquery-server.js';
import { SparkplugEdge, typeNumber, type BirthSpec, type EdgeMessage } from '../test/helpers/sparkplug-edge.js';
import { result, type CaseResult } from './cases.js';
import { cleanup, cpuSeconds, pollCounter, rateFromTimeline, startNode, tempDir } from './lib.js';

const DELIVERED = 'mqtt_ingest_messages_delivered_total';
const METRICS = 20;

/** Twenty metrics of the kinds a pump's gateway sends: floats, integers of several widths, booleans, a string. */
const SPECS: BirthSpec[] = Array.from({ length: METRICS }, (_, i) => {
  const kinds: BirthSpec['datatype'][] = ['Double', 'Float', 'Int32', 'UInt64', 'Boolean', 'Int16', 'String', 'Int64'];
  const datatype = kinds[i % kinds.length]!;
  return { name: `Pump/Metric${String(i).padStart(2, '0')}`, datatype, value: sample(datatype, 0) };
});

function sample(datatype: BirthSpec['datatype'], n: number): number | bigint | boolean | string {
  switch (datatype) {
    case 'Double':
    case 'Float':
      return 1.25 + (n % 100) / 8;
    case 'UInt64':
      return 2n ** 63n + BigInt(n);
    case 'Int64':
      return -(2n ** 53n) - BigInt(n);
    case 'Boolean':
      return n % 2 === 0;
    case 'String':
      return `state-${n % 7}`;
    default:
      return n % 30_000;
  }
}

/** NBIRTH, DBIRTH, then `n` DDATA of 20 metrics each, by alias; committed to a spool as a backlog. */
function prefill(dataDir: string, n: number): { data: Buffer; topic: string } {
  const edge = new SparkplugEdge('Mine', 'Gateway1');
  const spool = Spool.open({ dir: path.join(dataDir, 'spool'), maxBytes: 1e12, sinks: ['bigquery'], sync: 'normal' });
  const put = (m: { topic: string; payload: Buffer }) => ({ topic: m.topic, payload: m.payload, qos: 0 as const, retain: false, receivedAt: Date.now() });
  spool.append([put(edge.birth([])), put(edge.deviceBirth('Pump1', SPECS))]);
  let last: EdgeMessage = { topic: '', payload: Buffer.alloc(0) };
  for (let start = 0; start < n; start += 5_000) {
    const batch = [];
    for (let i = start; i < Math.min(n, start + 5_000); i++) {
      last = edge.data(SPECS.map((s) => ({ name: s.name, value: sample(s.datatype, i) })), 'Pump1');
      batch.push(put(last));
    }
    spool.append(batch);
  }
  spool.close();
  return { data: last.payload, topic: last.topic };
}

/** CPU µs per metric of decoding one DDATA and making its rows, in this process (names resolved by hand). */
function decodeCpuPerMetric(payload: Buffer, topicText: string): number {
  const topic = parseSparkplugTopic(topicText)!;
  const births: BirthMetric[] = SPECS.map((s) => ({ name: s.name, datatype: typeNumber(s.datatype) }));
  const msg = { messageId: '01HZX0000000000000000000AB', receivedAt: Date.now(), topic: topicText };
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 5; round++) {
    const before = process.cpuUsage();
    for (let i = 0; i < 5_000; i++) sparkplugRows(msg, topic, decodePayload(payload), undefined, births);
    const used = process.cpuUsage(before);
    best = Math.min(best, (used.user + used.system) / (5_000 * METRICS));
  }
  return best;
}


export async function sparkplugToBigQuery(n: number): Promise<CaseResult[]> {
  const bq = await startBigQueryServer({ projectId: 'bench-project' });
  let sample: { data: Buffer; topic: string } | undefined;
  const run = async (routes: boolean): Promise<{ rate: number; cpuUs: number }> => {
    const dataDir = tempDir('sparkplug');
    sample = prefill(dataDir, n);
    const env: Record<string, string> = {
      MQTT_BROKER_MODE: 'embedded',
      FILE_SINK: 'off',
      GCP_PROJECT_ID: 'bench-project',
      BIGQUERY_DATASET: routes ? 'sp_routed' : 'sp_raw',
      BIGQUERY_TABLE: 'raw',
      BIGQUERY_API_ENDPOINT: bq.url,
    };
    if (routes) {
      env.ROUTES_FILE = path.join(dataDir, 'routes.yaml');
      writeFileSync(env.ROUTES_FILE, 'routes:\n  - name: sparkplug\n    topic: spBv1.0/#\n    decode: sparkplug\n    bigquery: { table: sparkplug }\nunmatched: dead_letter\n');
    }
    const node = await startNode(env, { dataDir });
    try {
      // The raw baseline drains fast enough to finish before readiness answers: its rate is taken from the start.
      if (routes) await node.waitReady();
      const pid = node.proc.pid!;
      const before = routes ? { cpu: cpuSeconds(pid), delivered: await node.metric(DELIVERED, { sink: 'bigquery' }) } : { cpu: Number.NaN, delivered: 0 };
      const total = n + 2; // the births too
      const tl = await pollCounter(node, DELIVERED, (v) => v >= total, { intervalMs: 20, labels: 'sink="bigquery"' });
      const messages = total - before.delivered;
      const cpuUs = ((cpuSeconds(pid) - before.cpu) * 1e6) / (messages * (routes ? METRICS : 1));
      return { rate: rateFromTimeline(tl, total).rate, cpuUs };
    } finally {
      await node.stop();
      cleanup(dataDir);
      bq.tables.clear();
    }
  };
  try {
    const routed: { rate: number; cpuUs: number }[] = [];
    const raw: { rate: number; cpuUs: number }[] = [];
    for (let round = 0; round < 2; round++) {
      raw.push(await run(false));
      routed.push(await run(true));
    }
    const best = (runs: { rate: number }[]) => Math.max(...runs.map((r) => r.rate));
    const minCpu = (runs: { cpuUs: number }[]) => Math.min(...runs.map((r) => r.cpuUs));
    const decodeUs = decodeCpuPerMetric(sample!.data, sample!.topic);
    const details = {
      messages: n,
      metricsPerMessage: METRICS,
      routedMessageRuns: routed.map((r) => Math.round(r.rate)).join(' / '),
      rawMessageRuns: raw.map((r) => Math.round(r.rate)).join(' / '),
      nodeCpuUsPerMetric: routed.map((r) => r.cpuUs.toFixed(2)).join(' / '),
      decodeCpuUsPerMetric: Number(decodeUs.toFixed(2)),
    } as unknown as Record<string, number>;
    const rows = best(routed) * METRICS;
    return [
      {
        ...result('Sparkplug DDATA (20 metrics) → local BigQuery server, a row per metric', rows, best(raw), 'rows/s of the same backlog without routes: one raw row per message', 'report', details),
        node: `${Math.round(rows).toLocaleString('en-US')} rows/s (${Math.round(best(routed)).toLocaleString('en-US')} msg/s)`,
      },
      {
        ...result('… CPU per metric: the node, and decoding alone', 1 / minCpu(routed), 1 / decodeUs, 'decode + rows in one process', 'report', details),
        node: `${minCpu(routed).toFixed(2)} µs (node)`,
        baseline: `${decodeUs.toFixed(2)} µs (decoding and the row alone)`,
      },
    ];
  } finally {
    await bq.stop();
  }
}
