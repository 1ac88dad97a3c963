/**
 * Baselines for "spool → Pub/Sub": a plain publish loop with the node's batching (batches of `--batch`
 * messages, `--inflight` batches at once), reading nothing from disk. Run as its own process, like the
 * node, so both have a core of their own. Prints one JSON line: { messages, seconds, rate }.
 *
 * Default: the library's Topic.publishMessage for each message, its batcher set to the same batch size.
 * `--rpc`: each batch in one call of the generated Publish RPC client, with the library's serialiser.
 * `--encoder`: the same RPC with the request encoded by hand and sent on the client's stub, as the node's sink
 * does (src/sinks/pubsub/raw-publish.ts): what is left between the two is the spool's own cost.
 */
import { PubSub, v1 } from '@google-cloud/pubsub';
import { parseArgs } from 'node:util';
import { benchPayload, nowMs } from './lib.js';
import { RawPublish } from '../src/sinks/pubsub/raw-publish.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string' },
    project: { type: 'string' },
    topic: { type: 'string' },
    count: { type: 'string' },
    batch: { type: 'string', default: '1000' },
    inflight: { type: 'string', default: '4' },
    rpc: { type: 'boolean', default: false },
    encoder: { type: 'boolean', default: false },
  },
});
const count = Number(values.count);
const batchSize = Number(values.batch);
const pubsub = new PubSub({ projectId: values.project, apiEndpoint: values.host, emulatorMode: true });
const topic = pubsub.topic(values.topic as string, {
  batching: { maxMessages: batchSize, maxBytes: 9 * 1024 * 1024, maxMilliseconds: 1 },
});
const rpc =
  values.rpc || values.encoder
    ? new v1.PublisherClient((await pubsub.getClientConfig()) as ConstructorParameters<typeof v1.PublisherClient>[0])
    : undefined;
let raw: RawPublish | undefined;
if (values.encoder) {
  await rpc!.initialize();
  raw = await RawPublish.of(rpc!);
  if (!raw) throw new Error('the Publish client stub is not a grpc-js Client: the hand-encoded path is not available');
}
const payloads = Array.from({ length: Math.min(count, 10_000) }, (_, i) => Buffer.from(benchPayload(i)));
let next = 0;
let first = 0;

function message(i: number): { data: Buffer; attributes: Record<string, string> } {
  return {
    data: payloads[i % payloads.length]!,
    attributes: { message_id: String(i), mqtt_topic: 'bench/pubsub', mqtt_qos: '1', mqtt_retain: 'false', received_at: new Date().toISOString() },
  };
}

async function publishBatch(start: number, end: number): Promise<void> {
  if (rpc) {
    const messages = [];
    for (let i = start; i < end; i++) messages.push(message(i));
    if (raw) await raw.publish(topic.name, messages, 60_000);
    else await rpc.publish({ topic: topic.name, messages }, { isBundling: false });
    return;
  }
  const sends: Promise<string>[] = [];
  for (let i = start; i < end; i++) sends.push(topic.publishMessage(message(i)));
  await Promise.all(sends);
}

async function worker(): Promise<void> {
  while (next < count) {
    const start = next;
    const end = Math.min(count, start + batchSize);
    next = end;
    await publishBatch(start, end);
    if (first === 0) first = nowMs();
  }
}

const started = nowMs();
await Promise.all(Array.from({ length: Number(values.inflight) }, () => worker()));
const ended = nowMs();
await rpc?.close();
await pubsub.close();
// Same measure as for the node: from the first completed batch to the last.
const firstBatch = Math.min(batchSize, count);
const seconds = (ended - (first || started)) / 1000;
console.log(JSON.stringify({ messages: count, seconds, rate: (count - firstBatch) / Math.max(seconds, 1e-3), totalSeconds: (ended - started) / 1000 }));
