import { Writable } from 'node:stream';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { PubSubSink, MAX_MESSAGE_BYTES } from '../src/sinks/pubsub/pubsub-sink.js';
import { createLogger } from '../src/core/logger.js';
import type { SpooledMessage } from '../src/core/message.js';
import type { DeliveryOutcome } from '../src/core/outcome.js';
import { serviceAvailable } from './helpers/skip.js';
import { waitFor } from './helpers/ports.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { observed } from './contract/sink-contract.js';
import {
  createTopicAndSubscription,
  hasPubSubEmulator,
  pullAll,
  startPubSubEmulator,
  type PubSubEmulator,
} from './helpers/pubsub-emulator.js';

const available = serviceAvailable(
  'Pub/Sub emulator',
  hasPubSubEmulator(),
  'install the Google Cloud CLI with the pubsub emulator component',
);

let seq = 0;
function message(payload: Buffer, topic = 'sensors/a/temp', extra: Partial<SpooledMessage> = {}): SpooledMessage {
  seq += 1;
  return {
    seq,
    messageId: `01JTEST${String(seq).padStart(19, '0')}`,
    topic,
    payload,
    qos: 1,
    retain: false,
    receivedAt: Date.UTC(2026, 0, 2, 3, 4, 5, seq % 1000),
    ...extra,
  };
}

/** Collects log lines (pino writes each JSON line synchronously to a plain Writable). */
function captureLogs(): { lines: () => Record<string, unknown>[]; stream: Writable } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
}

const kinds = (outcomes: DeliveryOutcome[]) => outcomes.map((o) => (o.kind === 'delivered' ? o.kind : `${o.kind}:${o.reason}`));

describe.skipIf(!available)('PubSubSink against the Pub/Sub emulator', () => {
  let emu: PubSubEmulator;
  const sinks: PubSubSink[] = [];

  async function sink(
    topic: string,
    over: { emulatorHost?: string; publishTimeoutMs?: number; logs?: Writable; orderingKey?: 'none' | 'mqtt_topic' } = {},
  ) {
    const s = new PubSubSink({
      projectId: emu.projectId,
      topic: `projects/${emu.projectId}/topics/${topic}`,
      emulatorHost: over.emulatorHost ?? emu.host,
      maxBatchMessages: 1000,
      maxBatchBytes: 8 * 1024 * 1024,
      maxInFlight: 2,
      logger: createLogger('info', over.logs ?? captureLogs().stream),
      publishTimeoutMs: over.publishTimeoutMs,
      orderingKey: over.orderingKey,
    });
    await s.start();
    sinks.push(s);
    return s;
  }

  beforeAll(async () => {
    const started = Date.now();
    emu = await startPubSubEmulator();
    console.log(`Pub/Sub emulator answered after ${Date.now() - started} ms`);
  });

  afterAll(async () => {
    for (const s of sinks) await s.close();
    await emu?.stop();
  });

  it('delivers 2,000 messages with unchanged bytes and exactly the contract attributes', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'bulk-topic', 'bulk-sub');
    const s = await sink('bulk-topic');
    const view = observed(s);
    const batch: SpooledMessage[] = [
      message(Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0xa0, 0xa1]), 'bin/ary'), // not UTF-8
      message(Buffer.alloc(0), 'empty/payload', { retain: true, qos: 0 }), // MQTT allows empty payloads
      message(Buffer.from('{"t":21.5}'), 'ünïcode/topic/°C', { qos: 2 }),
    ];
    while (batch.length < 2000) batch.push(message(Buffer.from(`reading ${batch.length}`), `sensors/${batch.length % 7}`));

    const outcomes = await view.write(batch);
    expect(outcomes).toHaveLength(2000);
    expect(outcomes.every((o) => o.kind === 'delivered')).toBe(true);
    expect(view.status().state).toBe('ok');
    expect(view.status().lastDeliveryAt).toBeDefined();
    // The requests went out encoded by hand on the library's stub (raw-publish.ts), not through its serialiser.
    expect((s as unknown as { publisher?: { raw?: object } }).publisher?.raw, 'RawPublish in use').toBeDefined();

    const got = await pullAll(emu.host, emu.projectId, 'bulk-sub', 2000, 20_000);
    expect(got).toHaveLength(2000);
    const byId = new Map(got.map((r) => [r.attributes.message_id, r]));
    for (const m of batch) {
      const r = byId.get(m.messageId);
      expect(r, m.messageId).toBeDefined();
      expect(r!.data.equals(m.payload), m.messageId).toBe(true);
      expect(r!.attributes).toEqual({
        message_id: m.messageId,
        mqtt_topic: m.topic,
        mqtt_qos: String(m.qos),
        mqtt_retain: m.retain ? 'true' : 'false',
        received_at: new Date(m.receivedAt).toISOString(),
      });
    }
    expect(byId.get(batch[0]!.messageId)!.attributes.received_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('rejects a message over 10 MB and a topic over 1,024 bytes, and delivers the rest of the batch', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'limits-topic', 'limits-sub');
    const s = await sink('limits-topic');
    const view = observed(s);
    const nearLimit = Buffer.alloc(9_500_000, 0x5a); // legal, larger than the library's 9 MiB batch: sent alone
    const batch = [
      message(Buffer.from('first')),
      message(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 1)),
      message(Buffer.from('long topic'), 'a/'.repeat(513)),
      message(nearLimit),
      message(Buffer.from('last')),
    ];
    const outcomes = await view.write(batch);
    expect(kinds(outcomes)).toEqual([
      'delivered',
      'rejected:too_large',
      'rejected:attribute_too_long',
      'delivered',
      'delivered',
    ]);
    expect((outcomes[1] as { detail: string }).detail).toMatch(/10000000/);
    expect((outcomes[2] as { detail: string }).detail).toMatch(/mqtt_topic is 1026 bytes/);
    expect(view.status().state).toBe('ok');

    const got = await pullAll(emu.host, emu.projectId, 'limits-sub', 3, 15_000);
    expect(got.map((r) => r.attributes.message_id).sort()).toEqual(
      [batch[0]!, batch[3]!, batch[4]!].map((m) => m.messageId).sort(),
    );
    expect(got.find((r) => r.attributes.message_id === batch[3]!.messageId)!.data.equals(nearLimit)).toBe(true);
  });

  it('a request refused for one message is split: the messages Pub/Sub refuses are rejected, the rest delivered', async () => {
    const reading = { type: 'record', name: 'Reading', fields: [{ name: 't', type: 'double' }] };
    await createTopicAndSubscription(emu.host, emu.projectId, 'schema-topic', 'schema-sub', { avroSchema: reading });
    const s = await sink('schema-topic');
    const view = observed(s);
    const batch = [
      message(Buffer.from('{"t":1.5}')),
      message(Buffer.from('not json')),
      message(Buffer.from('{"t":2.5}')),
      message(Buffer.from('{"t":"warm"}')),
      message(Buffer.from('{"t":3.5}')),
    ];
    const outcomes = await view.write(batch);
    expect(kinds(outcomes)).toEqual([
      'delivered',
      'rejected:invalid_argument',
      'delivered',
      'rejected:invalid_argument',
      'delivered',
    ]);
    expect((outcomes[1] as { detail: string }).detail).toMatch(/^INVALID_ARGUMENT: /);
    expect(view.status().state).toBe('ok'); // the messages' problem, not the sink's

    const got = await pullAll(emu.host, emu.projectId, 'schema-sub', 3, 15_000);
    expect(got.map((r) => r.data.toString()).sort()).toEqual(['{"t":1.5}', '{"t":2.5}', '{"t":3.5}']);
  });

  it('with PUBSUB_ORDERING_KEY=mqtt_topic each MQTT topic keeps its order, a refused message included', async () => {
    const reading = { type: 'record', name: 'Reading', fields: [{ name: 'n', type: 'int' }] };
    await createTopicAndSubscription(emu.host, emu.projectId, 'ordered-topic', 'ordered-sub', { avroSchema: reading, ordered: true });
    const s = await sink('ordered-topic', { orderingKey: 'mqtt_topic' });
    expect(s.maxInFlight).toBe(1);
    // 2,500 messages: three requests. One refused message in the second makes Pub/Sub refuse that request
    // whole; the third must not go before the second's good messages, which are then sent one by one.
    const batch = Array.from({ length: 2500 }, (_, n) =>
      message(Buffer.from(n === 1500 ? '{"n":"not a number"}' : `{"n":${n}}`), `line-${n % 3}/pressure`),
    );
    const outcomes = await s.write(batch);
    expect(outcomes.filter((o) => o.kind === 'rejected')).toHaveLength(1);
    expect(outcomes[1500]).toMatchObject({ kind: 'rejected', reason: 'invalid_argument' });
    expect(outcomes.filter((o) => o.kind === 'delivered')).toHaveLength(2499);

    const got = await pullAll(emu.host, emu.projectId, 'ordered-sub', 2499, 60_000);
    expect(got).toHaveLength(2499);
    const byKey = new Map<string, number[]>();
    for (const r of got) {
      expect(r.orderingKey).toBe(r.attributes.mqtt_topic);
      byKey.set(r.orderingKey, [...(byKey.get(r.orderingKey) ?? []), (JSON.parse(r.data.toString()) as { n: number }).n]);
    }
    expect([...byKey.keys()].sort()).toEqual(['line-0/pressure', 'line-1/pressure', 'line-2/pressure']);
    for (const [key, ns] of byKey) {
      const expected = batch.map((_, n) => n).filter((n) => n % 3 === Number(key[5]) && n !== 1500);
      expect(ns, key).toEqual(expected);
    }
  });

  it('a missing topic is retryable topic_not_found, status failing, logged loudly once', async () => {
    const logs = captureLogs();
    const s = await sink('no-such-topic', { logs: logs.stream });
    const view = observed(s, createLogger('info', logs.stream));
    for (let i = 0; i < 2; i++) {
      const outcomes = await view.write([message(Buffer.from('x')), message(Buffer.from('y'))]);
      expect(kinds(outcomes)).toEqual(['retryable:topic_not_found', 'retryable:topic_not_found']);
    }
    const status = view.status();
    expect(status.state).toBe('failing');
    expect(status.detail).toMatch(/projects\/mqtt-ingest-test\/topics\/no-such-topic does not exist/);
    expect(status.lastError).toMatch(/^topic_not_found: /);
    const errors = logs.lines().filter((l) => l.code === 'SINK_FAILING');
    expect(errors).toHaveLength(1); // throttled: the second write's identical failure is not logged again
    expect(errors[0]).toMatchObject({ severity: 'ERROR', reason: 'topic_not_found', sink: 'pubsub', topic: 'projects/mqtt-ingest-test/topics/no-such-topic', failed: 2 });
    expect(errors[0]!.message).toBe(`Pub/Sub publishing is failing: ${status.detail}`);
  });

  it('an outage is retryable within publishTimeoutMs, and delivery resumes when it ends', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'outage-topic', 'outage-sub');
    const [, port] = emu.host.split(':');
    const proxy = await startTcpProxy('127.0.0.1', Number(port));
    try {
      const s = await sink('outage-topic', { emulatorHost: `127.0.0.1:${proxy.port}`, publishTimeoutMs: 2_000 });
      const view = observed(s);
      const before = message(Buffer.from('before'));
      expect(kinds(await view.write([before]))).toEqual(['delivered']);

      proxy.cut();
      const during = [message(Buffer.from('during 1')), message(Buffer.from('during 2'))];
      const t0 = Date.now();
      const outcomes = await view.write(during);
      const elapsed = Date.now() - t0;
      for (const o of outcomes) {
        expect(o.kind).toBe('retryable');
        expect((o as { reason: string }).reason).toMatch(/^(unavailable|deadline_exceeded)$/);
      }
      expect(elapsed).toBeLessThan(2_000 + 2_500); // the client's retries stop at the deadline, plus jitter
      expect(view.status().state).toBe('degraded');

      await proxy.restore();
      // As the dispatcher would: retry the same messages until they go through (grpc-js reconnects with backoff).
      await waitFor(async () => (await view.write(during)).every((o) => o.kind === 'delivered'), 20_000, 'delivery after restore');
      expect(view.status().state).toBe('ok');

      const got = await pullAll(emu.host, emu.projectId, 'outage-sub', 3, 15_000);
      const ids = new Set(got.map((r) => r.attributes.message_id));
      for (const m of [before, ...during]) expect(ids.has(m.messageId)).toBe(true);
    } finally {
      await proxy.close();
    }
  });
});
