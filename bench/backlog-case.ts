/**
 * The large-backlog case: a spool of `messages` 200-byte messages (10,000,000 in a full run, about 2 GB), as a
 * long WAN outage leaves it, drained into the Pub/Sub emulator by a node with default settings.
 *
 * - The backlog is written straight into the spool by this process (prefillSpool: the spool's own append, in
 *   groups of 10,000), so that the case measures the drain, not the intake.
 * - A node starts on it and is SIGKILLed once it is delivering (10 % of the backlog delivered, or at once for a
 *   small one): the backlog's spool is then opened after a crash, as after a power cut. The next node's start is
 *   timed to its readiness (spool open, commit-record check, counters, the first lease) and reported.
 * - That node drains what is left. Its delivered counter and its RSS are sampled every 250 ms; the rate of the
 *   first million delivered (or the first tenth, for a smaller backlog) is compared with the rate of the last,
 *   and the RSS is reported as peak against its value once the first million had gone.
 */
import { createTopic, prefillSpool, pubsubEnv, type CaseResult } from './cases.js';
import { cleanup, nowMs, readCounter, rssMb, startNode, tempDir } from './lib.js';
import type { PubSubEmulator } from '../test/helpers/pubsub-emulator.js';

const DELIVERED = 'mqtt_ingest_messages_delivered_total';

interface Sample {
  t: number;
  delivered: number;
  rssMb: number;
}

/** The time at which the samples first reached `count` delivered (linear between two samples). */
function timeAt(samples: Sample[], count: number): number {
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (b.delivered >= count) return b.delivered === a.delivered ? b.t : a.t + ((count - a.delivered) / (b.delivered - a.delivered)) * (b.t - a.t);
  }
  return samples.at(-1)!.t;
}

export async function backlogDrain(emu: PubSubEmulator, messages: number): Promise<CaseResult[]> {
  const topic = 'bench-backlog';
  await createTopic(emu, topic);
  const env = { ...pubsubEnv(emu, topic), MQTT_BROKER_MODE: 'embedded' };
  const dataDir = tempDir('backlog');
  try {
    const filled = nowMs();
    prefillSpool(dataDir, messages);
    const fillSeconds = (nowMs() - filled) / 1000;
    process.stderr.write(`bench: backlog: ${messages.toLocaleString('en-US')} messages written into the spool in ${fillSeconds.toFixed(0)} s\n`);

    const first = await startNode(env, { dataDir });
    await first.waitReady(600_000);
    const killAt = Math.floor(messages / 10);
    while ((await readCounter(first, DELIVERED, 'sink="pubsub"')) < killAt) await new Promise((r) => setTimeout(r, 100));
    const deliveredBeforeKill = await readCounter(first, DELIVERED, 'sink="pubsub"');
    await first.kill();

    const started = nowMs();
    const node = await startNode(env, { dataDir });
    const samples: Sample[] = [];
    let openSeconds: number;
    let left: number;
    try {
      await node.waitReady(600_000);
      openSeconds = (nowMs() - started) / 1000;
      left = await readCounter(node, 'mqtt_ingest_spool_pending_messages', 'sink="pubsub"');
      // Pending as counted at open, less what the first poll already saw go; the drain ends at the count.
      for (;;) {
        const delivered = await readCounter(node, DELIVERED, 'sink="pubsub"');
        samples.push({ t: nowMs(), delivered, rssMb: rssMb(node.proc.pid!) });
        if (delivered >= left) break;
        if (node.proc.exitCode !== null) throw new Error(`the node exited (${node.proc.exitCode})`);
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      await node.stop();
    }
    // The first and the last million (a tenth each of a backlog under two million).
    const slice = left >= 2_000_000 ? 1_000_000 : Math.floor(left / 10);
    // From the first sample on (delivery began before it: the node delivers while readiness is polled).
    const base = samples[0]!.delivered;
    const firstRate = slice / ((timeAt(samples, base + slice) - samples[0]!.t) / 1000);
    const lastRate = slice / ((timeAt(samples, left) - timeAt(samples, left - slice)) / 1000);
    const afterFirst = samples.find((s) => s.delivered >= slice)?.rssMb ?? samples[0]!.rssMb;
    const peak = Math.max(...samples.map((s) => s.rssMb));
    const late = samples.filter((s) => s.delivered >= left - slice).map((s) => s.rssMb);
    const drainSeconds = (samples.at(-1)!.t - samples[0]!.t) / 1000;
    const sliceName = slice === 1_000_000 ? 'million' : `${slice.toLocaleString('en-US')}`;
    const details = {
      messages,
      fillSeconds: Math.round(fillSeconds),
      deliveredBeforeKill,
      pendingAtRestart: left,
      openSeconds: Number(openSeconds.toFixed(2)),
      drainSeconds: Math.round(drainSeconds),
      drainRate: Math.round(left / drainSeconds),
      sliceMessages: slice,
      firstRate: Math.round(firstRate),
      lastRate: Math.round(lastRate),
      nodeRate: Math.round(lastRate),
      baselineRate: Math.round(firstRate),
      rssAfterFirstMb: Math.round(afterFirst),
      rssPeakMb: Math.round(peak),
      rssLastSliceMaxMb: Math.round(Math.max(...late)),
    };
    const label = `${messages.toLocaleString('en-US')}-message spool backlog → Pub/Sub emulator, after a SIGKILL`;
    return [
      {
        case: `${label}: the last ${sliceName} against the first`,
        node: `${Math.round(lastRate).toLocaleString('en-US')} msg/s (last ${sliceName})`,
        baseline: `${Math.round(firstRate).toLocaleString('en-US')} msg/s (first ${sliceName}); all ${left.toLocaleString('en-US')} in ${Math.round(drainSeconds)} s`,
        ratio: lastRate / firstRate,
        goal: '≥ 0.90×',
        met: lastRate / firstRate >= 0.9,
        details,
      },
      {
        case: '… its RSS: peak over the drain against the RSS once the first part had gone; spool open after the SIGKILL',
        node: `${Math.round(peak)} MB peak (${Math.round(Math.max(...late))} MB in the last ${sliceName})`,
        baseline: `${Math.round(afterFirst)} MB after the first ${sliceName}; ready ${openSeconds.toFixed(1)} s after the start`,
        ratio: peak / afterFirst,
        goal: 'report',
        met: null,
        details,
      },
    ];
  } finally {
    cleanup(dataDir);
  }
}
