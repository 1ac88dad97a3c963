import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PubSubSink, type PubSubSinkOptions } from '../src/sinks/pubsub/pubsub-sink.js';
import { createLogger } from '../src/core/logger.js';
import type { DeliveryOutcome } from '../src/core/outcome.js';
import type { DeliveryMessage, RouteTargets } from '../src/sinks/sink.js';
import { observed } from './contract/sink-contract.js';
import { serviceAvailable } from './helpers/skip.js';
import { createTopicAndSubscription, hasPubSubEmulator, pullAll, startPubSubEmulator, type PubSubEmulator, type Received } from './helpers/pubsub-emulator.js';

/**
 * Routed messages (RouteTargets.pubsub, as the routes set them) through the Pub/Sub sink, against the emulator:
 * each goes to its route's topic with the route's data, attributes and ordering key, in the same writes as the
 * messages that go to PUBSUB_TOPIC.
 */
const available = serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI with the pubsub emulator component');

let seq = 0;
function message(topic: string, payload: string, routed?: RouteTargets, extra: Partial<DeliveryMessage> = {}): DeliveryMessage {
  seq += 1;
  return {
    seq,
    messageId: `01JROUTED${String(seq).padStart(17, '0')}`,
    topic,
    payload: Buffer.from(payload),
    qos: 1,
    retain: false,
    receivedAt: Date.UTC(2026, 0, 2, 3, 4, 5, seq % 1000),
    ...(routed ? { routed } : {}),
    ...extra,
  };
}

const contract = (m: DeliveryMessage) => ({
  message_id: m.messageId,
  mqtt_topic: m.topic,
  mqtt_qos: String(m.qos),
  mqtt_retain: m.retain ? 'true' : 'false',
  received_at: new Date(m.receivedAt).toISOString(),
});

const kinds = (outcomes: DeliveryOutcome[]) => outcomes.map((o) => (o.kind === 'delivered' ? o.kind : `${o.kind}:${o.reason}`));

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

describe.skipIf(!available)('routed messages through the Pub/Sub sink, against the emulator', () => {
  let emu: PubSubEmulator;
  const sinks: PubSubSink[] = [];
  const path = (topic: string) => `projects/${emu.projectId}/topics/${topic}`;

  async function sink(topic: string, over: Partial<PubSubSinkOptions> = {}) {
    const s = new PubSubSink({
      projectId: emu.projectId,
      topic: path(topic),
      emulatorHost: emu.host,
      maxBatchMessages: 1000,
      maxBatchBytes: 8 * 1024 * 1024,
      maxInFlight: 2,
      logger: createLogger('silent'),
      publishTimeoutMs: 10_000,
      ...over,
    });
    await s.start();
    sinks.push(s);
    return s;
  }
  // Waiting for nothing still pulls for a while, to see that nothing came.
  const pull = (sub: string, count: number) => pullAll(emu.host, emu.projectId, sub, Math.max(count, 1), count === 0 ? 1_500 : 20_000);
  const byId = (got: Received[]) => new Map(got.map((r) => [r.attributes.message_id!, r]));

  beforeAll(async () => {
    emu = await startPubSubEmulator();
  });
  afterAll(async () => {
    for (const s of sinks) await s.close();
    await emu?.stop();
  });

  it('one batch: each route topic and the own topic receive exactly their messages, with the route data and attributes', async () => {
    for (const t of ['mixed-own', 'mixed-pressure', 'mixed-flow']) await createTopicAndSubscription(emu.host, emu.projectId, t, `${t}-sub`);
    const s = await sink('mixed-own');
    const view = observed(s);
    const pressure = (n: number) =>
      message(`plant/hh/pressure/pt-${n}`, `{"bar":${n}}`, {
        route: 'pressure',
        pubsub: { topic: path('mixed-pressure'), data: Buffer.from(`{"bar":${n}}`), attributes: { site: 'hh', sensor: `pt-${n}` } },
      });
    const flow = (n: number) =>
      message(`plant/hh/flow/m-${n}`, `{"lpm":${n},"raw":"…"}`, {
        route: 'flow',
        pubsub: { topic: path('mixed-flow'), data: Buffer.from(JSON.stringify({ site: 'hh', meter: `m-${n}`, lpm: n })), attributes: { meter: `m-${n}` } },
      });
    const batch: DeliveryMessage[] = [];
    for (let n = 0; n < 30; n++) {
      const kind = n % 3;
      batch.push(kind === 0 ? pressure(n) : kind === 1 ? flow(n) : message(`debug/${n}`, Buffer.from([0xff, n]).toString('latin1')));
    }
    // An MQTT 5 message on a route: its properties follow the route's attributes.
    batch.push(message('plant/hh/pressure/pt-99', '{"bar":99}', pressure(99).routed, { properties: { contentType: 'application/json', userProperties: { fw: '1.2' } } }));

    const outcomes = await view.write(batch);
    expect(kinds(outcomes).every((k) => k === 'delivered')).toBe(true);
    expect(view.status().state).toBe('ok');

    const expected = (topic: string | undefined) => batch.filter((m) => m.routed?.pubsub?.topic === topic);
    const own = await pull('mixed-own-sub', 10);
    const pressures = await pull('mixed-pressure-sub', 11);
    const flows = await pull('mixed-flow-sub', 10);
    for (const [got, want] of [
      [own, expected(undefined)],
      [pressures, expected(path('mixed-pressure'))],
      [flows, expected(path('mixed-flow'))],
    ] as const) {
      expect(got.map((r) => r.attributes.message_id).sort()).toEqual(want.map((m) => m.messageId).sort());
      const received = byId(got);
      for (const m of want) {
        const r = received.get(m.messageId)!;
        const pubsub = m.routed?.pubsub;
        expect(r.data.equals(pubsub ? pubsub.data : m.payload), m.messageId).toBe(true);
        const properties = m.properties ? { mqtt_content_type: 'application/json', mqtt_user_fw: '1.2' } : {};
        expect(r.attributes).toEqual({ ...contract(m), ...pubsub?.attributes, ...properties });
        expect(r.orderingKey).toBe('');
      }
    }
    // Nothing more arrives on any of them.
    for (const sub of ['mixed-own-sub', 'mixed-pressure-sub', 'mixed-flow-sub']) expect(await pull(sub, 0)).toHaveLength(0);
  }, 90_000);

  it('with route ordering keys: each message carries its key, and each key keeps its order across requests', async () => {
    for (const t of ['ord-own', 'ord-route', 'ord-plain']) await createTopicAndSubscription(emu.host, emu.projectId, t, `${t}-sub`, { ordered: true });
    const s = await sink('ord-own', { routeOrdering: true });
    expect(s.maxInFlight).toBe(1);
    // 2,400 messages on the keyed route: three requests to its topic, sent one after another.
    const batch: DeliveryMessage[] = [];
    for (let n = 0; n < 2400; n++) {
      const key = `hh/pt-${n % 2}`;
      batch.push(message(`plant/hh/pressure/pt-${n % 2}`, `${n}`, { route: 'keyed', pubsub: { topic: path('ord-route'), data: Buffer.from(`${n}`), attributes: {}, orderingKey: key } }));
      if (n % 200 === 0) {
        batch.push(message(`plant/hh/flow/${n}`, `${n}`, { route: 'plain', pubsub: { topic: path('ord-plain'), data: Buffer.from(`${n}`), attributes: {} } }));
        batch.push(message(`debug/${n}`, `${n}`));
      }
    }
    const outcomes = await s.write(batch);
    expect(kinds(outcomes).every((k) => k === 'delivered')).toBe(true);

    const keyed = await pull('ord-route-sub', 2400);
    expect(keyed).toHaveLength(2400);
    const byKey = new Map<string, number[]>();
    for (const r of keyed) {
      expect(r.orderingKey).toBe(`hh/${r.attributes.mqtt_topic!.split('/')[3]}`);
      byKey.set(r.orderingKey, [...(byKey.get(r.orderingKey) ?? []), Number(r.data.toString())]);
    }
    expect([...byKey.keys()].sort()).toEqual(['hh/pt-0', 'hh/pt-1']);
    for (const [key, ns] of byKey) expect(ns, key).toEqual(Array.from({ length: 2400 }, (_, n) => n).filter((n) => n % 2 === Number(key.at(-1))));
    // A route without a key, and a message without a route, carry none (PUBSUB_ORDERING_KEY is not set).
    for (const sub of ['ord-plain-sub', 'ord-own-sub']) {
      const got = await pull(sub, 12);
      expect(got, sub).toHaveLength(12);
      expect(got.map((r) => r.orderingKey), sub).toEqual(Array(12).fill(''));
    }

    // With PUBSUB_ORDERING_KEY=mqtt_topic as well, only the route's key replaces the MQTT topic.
    const both = await sink('ord-own', { orderingKey: 'mqtt_topic', routeOrdering: true });
    const three = [
      message('plant/hh/pressure/pt-5', 'keyed', { route: 'keyed', pubsub: { topic: path('ord-route'), data: Buffer.from('keyed'), attributes: {}, orderingKey: 'hh/pt-5' } }),
      message('plant/hh/flow/f-5', 'plain', { route: 'plain', pubsub: { topic: path('ord-plain'), data: Buffer.from('plain'), attributes: {} } }),
      message('debug/5', 'own'),
    ];
    expect(kinds(await both.write(three))).toEqual(['delivered', 'delivered', 'delivered']);
    expect((await pull('ord-route-sub', 1)).map((r) => r.orderingKey)).toEqual(['hh/pt-5']);
    expect((await pull('ord-plain-sub', 1)).map((r) => r.orderingKey)).toEqual(['plant/hh/flow/f-5']);
    expect((await pull('ord-own-sub', 1)).map((r) => r.orderingKey)).toEqual(['debug/5']);
  }, 120_000);

  it.each([false, true])('a route topic that does not exist holds up only its messages (routeOrdering: %s)', async (routeOrdering) => {
    const own = `gone-own-${routeOrdering}`;
    const there = `gone-there-${routeOrdering}`;
    const missing = path(`gone-missing-${routeOrdering}`);
    for (const t of [own, there]) await createTopicAndSubscription(emu.host, emu.projectId, t, `${t}-sub`);
    const logs = captureLogs();
    const s = await sink(own, { routeOrdering });
    const view = observed(s, createLogger('info', logs.stream));
    const toMissing = (n: number) => message(`plant/x/${n}`, `m${n}`, { route: 'lost', pubsub: { topic: missing, data: Buffer.from(`m${n}`), attributes: { n: String(n) } } });
    const toThere = (n: number) =>
      message(`plant/y/${n}`, `t${n}`, { route: 'found', pubsub: { topic: path(there), data: Buffer.from(`t${n}`), attributes: {}, ...(routeOrdering ? { orderingKey: 'y' } : {}) } });
    // The missing topic comes first in the batch: with ordering it is sent first, and must not hold back the others.
    const batch = [toMissing(1), toThere(1), message('debug/1', 'o1'), toMissing(2), toThere(2), message('debug/2', 'o2')];
    const outcomes = await view.write(batch);
    expect(kinds(outcomes)).toEqual(['retryable:topic_not_found', 'delivered', 'delivered', 'retryable:topic_not_found', 'delivered', 'delivered']);
    for (const o of [outcomes[0]!, outcomes[3]!]) {
      expect(o).toMatchObject({ health: 'failing' });
      expect((o as { detail: string }).detail).toContain(`Pub/Sub topic ${missing} does not exist`);
      expect((o as { detail: string }).detail).toContain("the route's pubsub.topic in ROUTES_FILE");
    }
    const status = view.status();
    expect(status.state).toBe('failing');
    expect(status.detail).toContain(missing);
    expect(logs.lines().filter((l) => l.code === 'SINK_FAILING')).toMatchObject([{ reason: 'topic_not_found', failed: 2 }]);

    expect((await pull(`${there}-sub`, 2)).map((r) => r.data.toString()).sort()).toEqual(['t1', 't2']);
    expect((await pull(`${own}-sub`, 2)).map((r) => r.data.toString()).sort()).toEqual(['o1', 'o2']);

    // Once the topic exists, the retried messages go there.
    await createTopicAndSubscription(emu.host, emu.projectId, missing.split('/').at(-1)!, `gone-missing-${routeOrdering}-sub`);
    expect(kinds(await view.write([batch[0]!, batch[3]!]))).toEqual(['delivered', 'delivered']);
    expect(view.status().state).toBe('ok');
    const late = await pull(`gone-missing-${routeOrdering}-sub`, 2);
    expect(late.map((r) => [r.data.toString(), r.attributes.n])).toEqual(expect.arrayContaining([['m1', '1'], ['m2', '2']]));
  }, 90_000);

  it('a route topic refusing a message (its schema): that message alone is dead-lettered, its neighbours on every topic delivered', async () => {
    const reading = { type: 'record', name: 'Reading', fields: [{ name: 'bar', type: 'double' }] };
    await createTopicAndSubscription(emu.host, emu.projectId, 'schema-route', 'schema-route-sub', { avroSchema: reading });
    await createTopicAndSubscription(emu.host, emu.projectId, 'schema-own', 'schema-own-sub');
    const logs = captureLogs();
    const s = await sink('schema-own', { logger: createLogger('info', logs.stream) });
    const view = observed(s);
    const toRoute = (data: string) => message('plant/hh/pressure/pt-1', 'raw', { route: 'pressure', pubsub: { topic: path('schema-route'), data: Buffer.from(data), attributes: { site: 'hh' } } });
    const batch = [toRoute('{"bar":1.5}'), message('debug/1', 'not json either'), toRoute('{"bar":"high"}'), toRoute('{"bar":2.5}'), message('debug/2', 'x')];
    const outcomes = await view.write(batch);
    expect(kinds(outcomes)).toEqual(['delivered', 'delivered', 'rejected:invalid_argument', 'delivered', 'delivered']);
    expect(view.status().state).toBe('ok');
    const refused = logs.lines().filter((l) => l.code === 'PUBSUB_MESSAGE_REFUSED');
    expect(refused).toMatchObject([{ messageId: batch[2]!.messageId, route: 'pressure', topic: path('schema-route'), reason: 'invalid_argument' }]);
    expect((await pull('schema-route-sub', 2)).map((r) => r.data.toString()).sort()).toEqual(['{"bar":1.5}', '{"bar":2.5}']);
    expect((await pull('schema-own-sub', 2)).map((r) => r.data.toString()).sort()).toEqual(['not json either', 'x']);
  }, 60_000);
});
