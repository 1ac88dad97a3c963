/**
 * The end-to-end case's non-durable baseline: an MQTT.js subscriber that acknowledges each QoS 1 message on
 * receipt (MQTT.js's default: the PUBACK goes before anything else is done with it) and sends the messages to
 * Pub/Sub as the node's sink does, with no spool. Batching as the node's: whatever has arrived when a publish slot
 * is free (the node's runner leases after each group commit, one per turn of the event loop; here once per turn
 * too), up to PUBSUB_BATCH_MAX_MESSAGES' default of 1,000 messages and the sink's 9 MiB of data and attributes,
 * PUBSUB_MAX_IN_FLIGHT's default of 4 batches at once; each batch one call of the generated Publish RPC client with
 * the sink's call options, the same attributes (message_id a ULID, mqtt_topic, mqtt_qos, mqtt_retain,
 * received_at). Run as its own process so that its CPU can be read from /proc.
 *
 * Reports on stdout, one JSON line each: `ready` once subscribed (and the Publish client initialised), then
 * `reached` with the count each time the messages Pub/Sub acknowledged (the message ids its responses returned)
 * reach the next of `--marks`. Stops on `end` (or the end of stdin).
 */
import { PubSub, v1 } from '@google-cloud/pubsub';
import mqtt from 'mqtt';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { monotonicFactory } from 'ulid';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    filter: { type: 'string' },
    'client-id': { type: 'string' },
    host: { type: 'string' },
    project: { type: 'string' },
    topic: { type: 'string' },
    marks: { type: 'string' },
    batch: { type: 'string', default: '1000' },
    bytes: { type: 'string', default: String(9 * 1024 * 1024) },
    inflight: { type: 'string', default: '4' },
  },
});
const maxMessages = Number(values.batch);
const maxBytes = Number(values.bytes);
const maxInFlight = Number(values.inflight);
const marks = String(values.marks ?? '')
  .split(',')
  .filter(Boolean)
  .map(Number);

const report = (event: string, extra: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, ...extra }) + '\n');

const pubsub = new PubSub({ projectId: values.project, apiEndpoint: values.host, emulatorMode: true });
const topicPath = `projects/${values.project}/topics/${values.topic}`;
const rpc = new v1.PublisherClient((await pubsub.getClientConfig()) as ConstructorParameters<typeof v1.PublisherClient>[0]);
await rpc.initialize();

/** The sink's call options (pubsub-sink.ts callOptions): no bundling, one attempt, a 60 s bound. */
const TIMEOUT_MS = 60_000;
const callOptions = () => ({
  isBundling: false,
  timeout: TIMEOUT_MS,
  retry: {
    retryCodes: [] as number[],
    backoffSettings: {
      initialRetryDelayMillis: 100,
      retryDelayMultiplier: 2,
      maxRetryDelayMillis: 5_000,
      initialRpcTimeoutMillis: TIMEOUT_MS,
      rpcTimeoutMultiplier: 1,
      maxRpcTimeoutMillis: TIMEOUT_MS,
      totalTimeoutMillis: TIMEOUT_MS,
    },
  },
});

type Message = { data: Buffer; attributes: Record<string, string> };
const newId = monotonicFactory();
let pending: { message: Message; size: number }[] = [];
let inFlight = 0;
let acknowledged = 0;
let scheduled = false;
let lastMs = Number.NaN;
let lastIso = '';

function receivedAt(ms: number): string {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(pump);
}

function pump(): void {
  scheduled = false;
  while (inFlight < maxInFlight && pending.length > 0) {
    let end = 1;
    let bytes = pending[0]!.size;
    while (end < pending.length && end < maxMessages && bytes + pending[end]!.size <= maxBytes) bytes += pending[end++]!.size;
    const batch = end === pending.length ? pending : pending.slice(0, end);
    pending = end === pending.length ? [] : pending.slice(end);
    inFlight += 1;
    rpc
      .publish({ topic: topicPath, messages: batch.map((p) => p.message) }, callOptions())
      .then(([response]) => {
        inFlight -= 1;
        const ids = response.messageIds?.length ?? 0;
        if (ids !== batch.length) throw new Error(`Pub/Sub returned ${ids} message ids for ${batch.length} messages`);
        acknowledged += ids;
        while (marks.length > 0 && acknowledged >= marks[0]!) report('reached', { mark: marks.shift(), acknowledged });
        schedule();
      })
      .catch((err: unknown) => {
        report('error', { message: String(err) });
        process.exit(1);
      });
  }
}

const client = await mqtt.connectAsync(String(values.url), { protocolVersion: 5, clientId: values['client-id'], clean: true, reconnectPeriod: 0 });
client.on('message', (topic, payload, packet) => {
  const attributes = {
    message_id: newId(),
    mqtt_topic: topic,
    mqtt_qos: String(packet.qos),
    mqtt_retain: packet.retain ? 'true' : 'false',
    received_at: receivedAt(Date.now()),
  };
  let size = payload.length;
  for (const key in attributes) size += key.length + Buffer.byteLength(attributes[key as keyof typeof attributes]);
  pending.push({ message: { data: payload, attributes }, size });
  schedule();
});
client.on('error', (err) => {
  report('error', { message: String(err) });
  process.exit(1);
});
await client.subscribeAsync(String(values.filter), { qos: 1 });
report('ready');

const stop = async () => {
  await client.endAsync();
  await rpc.close();
  await pubsub.close();
  process.exit(0);
};
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === 'end') void stop();
});
lines.on('close', () => void stop());
