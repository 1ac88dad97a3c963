/**
 * Baseline for "spool → Pub/Sub": a plain @google-cloud/pubsub publish loop with the node's batching
 * (batches of `--batch` messages, `--inflight` batches at once), reading nothing from disk. Run as its own
 * process, like the node, so both have a core of their own. Prints one JSON line: { messages, seconds, rate }.
 */
import { PubSub } from '@google-cloud/pubsub';
import { parseArgs } from 'node:util';
import { benchPayload, nowMs } from './lib.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string' },
    project: { type: 'string' },
    topic: { type: 'string' },
    count: { type: 'string' },
    batch: { type: 'string', default: '1000' },
    inflight: { type: 'string', default: '4' },
  },
});
const count = Number(values.count);
const batchSize = Number(values.batch);
const pubsub = new PubSub({ projectId: values.project, apiEndpoint: values.host, emulatorMode: true });
const topic = pubsub.topic(values.topic as string, {
  batching: { maxMessages: batchSize, maxBytes: 9 * 1024 * 1024, maxMilliseconds: 1 },
});
const payloads = Array.from({ length: Math.min(count, 10_000) }, (_, i) => Buffer.from(benchPayload(i)));
let next = 0;
let first = 0;

async function worker(): Promise<void> {
  while (next < count) {
    const start = next;
    const end = Math.min(count, start + batchSize);
    next = end;
    const sends: Promise<string>[] = [];
    for (let i = start; i < end; i++) {
      sends.push(
        topic.publishMessage({
          data: payloads[i % payloads.length],
          attributes: { message_id: String(i), mqtt_topic: 'bench/pubsub', mqtt_qos: '1', mqtt_retain: 'false', received_at: new Date().toISOString() },
        }),
      );
    }
    await Promise.all(sends);
    if (first === 0) first = nowMs();
  }
}

const started = nowMs();
await Promise.all(Array.from({ length: Number(values.inflight) }, () => worker()));
const ended = nowMs();
await pubsub.close();
// Same measure as for the node: from the first completed batch to the last.
const firstBatch = Math.min(batchSize, count);
const seconds = (ended - (first || started)) / 1000;
console.log(JSON.stringify({ messages: count, seconds, rate: (count - firstBatch) / Math.max(seconds, 1e-3), totalSeconds: (ended - started) / 1000 }));
