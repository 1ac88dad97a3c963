import { describe, it, expect } from 'vitest';
import { checkLimits, contractAttributes, CONTRACT_ATTRIBUTE_NAMES, isOutgoing, MAX_MESSAGE_BYTES, outgoing, type Outgoing, type OutgoingOptions } from './outgoing.js';
import type { PropertyDrops } from './property-attributes.js';
import type { DeliveryMessage } from '../sink.js';
import type { DeliveryOutcome } from '../../core/outcome.js';

const OWN = 'projects/demo-project/topics/telemetry';
const ROUTE = 'projects/demo-project/topics/pressure-readings';

const msg = (over: Partial<DeliveryMessage> = {}): DeliveryMessage => ({
  seq: 1,
  messageId: '01JABCDEFGHJKMNPQRSTVWXYZ0',
  topic: 'plant/hamburg/pressure/pt-07',
  payload: Buffer.from('{"bar":1.5}'),
  qos: 1,
  retain: false,
  receivedAt: Date.UTC(2026, 4, 6, 7, 8, 9, 10),
  ...over,
});

const routed = (pubsub: Partial<NonNullable<NonNullable<DeliveryMessage['routed']>['pubsub']>> = {}, over: Partial<DeliveryMessage> = {}) =>
  msg({ routed: { route: 'pressure', pubsub: { topic: ROUTE, data: Buffer.from('{"bar":1.5,"site":"hamburg"}'), attributes: { site: 'hamburg', sensor: 'pt-07' }, ...pubsub } }, ...over });

function build(m: DeliveryMessage, over: Partial<OutgoingOptions> = {}): { out: Outgoing | DeliveryOutcome; drops: PropertyDrops[] } {
  const drops: PropertyDrops[] = [];
  const out = outgoing(m, { topic: OWN, mqttTopicKey: false, countDrops: (d) => drops.push(d), ...over });
  return { out, drops };
}
const sent = (m: DeliveryMessage, over: Partial<OutgoingOptions> = {}): Outgoing => {
  const { out } = build(m, over);
  if (!isOutgoing(out)) throw new Error(`not sent: ${JSON.stringify(out)}`);
  return out;
};

describe('outgoing', () => {
  it('a message without a route: the own topic, its payload, the contract attributes, no ordering key', () => {
    const m = msg();
    const out = sent(m);
    expect(out).toEqual({ topic: OWN, message: { data: m.payload, attributes: contractAttributes(m) }, size: out.size });
    expect(out.size).toBe(m.payload.length + Object.entries(contractAttributes(m)).reduce((n, [k, v]) => n + k.length + Buffer.byteLength(v), 0));
    expect(sent(m, { mqttTopicKey: true }).message.orderingKey).toBe(m.topic);
    expect(sent(m, { mqttTopicKey: true }).size).toBe(out.size + m.topic.length);
  });

  it('a routed message: the route topic and data, the route attributes after the contract ones, then the properties', () => {
    const m = routed({}, { properties: { contentType: 'application/json', userProperties: { fw: '1.2' } } });
    const out = sent(m);
    expect(out.topic).toBe(ROUTE);
    expect(out.message.data.toString()).toBe('{"bar":1.5,"site":"hamburg"}');
    expect(Object.keys(out.message.attributes)).toEqual([
      'message_id', 'mqtt_topic', 'mqtt_qos', 'mqtt_retain', 'received_at', 'site', 'sensor', 'mqtt_content_type', 'mqtt_user_fw',
    ]);
    expect(out.message.attributes).toMatchObject({ ...contractAttributes(m), site: 'hamburg', sensor: 'pt-07', mqtt_user_fw: '1.2' });
    expect(out.message.orderingKey).toBeUndefined();
  });

  it("the route's ordering key wins over PUBSUB_ORDERING_KEY=mqtt_topic; without one, the MQTT topic still applies", () => {
    expect(sent(routed({ orderingKey: 'hamburg/pt-07' }), { mqttTopicKey: true }).message.orderingKey).toBe('hamburg/pt-07');
    expect(sent(routed({ orderingKey: 'hamburg/pt-07' })).message.orderingKey).toBe('hamburg/pt-07');
    const m = routed();
    expect(sent(m, { mqttTopicKey: true }).message.orderingKey).toBe(m.topic);
  });

  it('checks the limits on the routed data, not the payload', () => {
    const small = routed({ data: Buffer.from('{}') }, { payload: Buffer.alloc(MAX_MESSAGE_BYTES + 1) });
    expect(isOutgoing(build(small).out)).toBe(true);
    expect(checkLimits(small, contractAttributes(small))).toBeUndefined();
    const large = routed({ data: Buffer.alloc(MAX_MESSAGE_BYTES) }, { payload: Buffer.from('x') });
    expect(build(large).out).toMatchObject({ kind: 'rejected', reason: 'too_large', detail: expect.stringMatching(/\(data 10000000 \+ attributes \d+\)/) });
    expect(checkLimits(large, contractAttributes(large))).toMatchObject({ kind: 'rejected', reason: 'too_large' });
  });

  it('checks every route attribute', () => {
    expect(build(routed({ attributes: { site: 'é'.repeat(513) } })).out).toMatchObject({
      kind: 'rejected',
      reason: 'attribute_too_long',
      detail: 'attribute site is 1026 bytes; Pub/Sub allows 1024',
    });
    // Route attributes count towards the 10 MB.
    const attributes = { site: 's'.repeat(1000) };
    const room = MAX_MESSAGE_BYTES - sent(routed({ data: Buffer.alloc(0), attributes })).size;
    expect(isOutgoing(build(routed({ data: Buffer.alloc(room), attributes })).out)).toBe(true);
    expect(build(routed({ data: Buffer.alloc(room + 1), attributes })).out).toMatchObject({ kind: 'rejected', reason: 'too_large' });
  });

  it('properties that would pass 10 MB are left out, the route attributes kept, and counted', () => {
    const base = sent(routed({ data: Buffer.alloc(0) })).size;
    const m = routed(
      { data: Buffer.alloc(MAX_MESSAGE_BYTES - base - 10) },
      { properties: { contentType: 'text/plain', userProperties: { a: '1', b: '2' } } },
    );
    const { out, drops } = build(m);
    if (!isOutgoing(out)) throw new Error('not sent');
    expect(Object.keys(out.message.attributes)).toEqual(['message_id', 'mqtt_topic', 'mqtt_qos', 'mqtt_retain', 'received_at', 'site', 'sensor']);
    expect(drops).toEqual([{ message_too_large: 3 }]);
  });

  it('the 100 attributes Pub/Sub allows include the route attributes', () => {
    const userProperties = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`p${i}`, String(i)]));
    const { out, drops } = build(routed({}, { properties: { userProperties } }));
    if (!isOutgoing(out)) throw new Error('not sent');
    expect(Object.keys(out.message.attributes)).toHaveLength(100);
    expect(drops).toEqual([{ too_many: 7 }]);
  });
});

describe('CONTRACT_ATTRIBUTE_NAMES', () => {
  it('names exactly what contractAttributes sets', () => {
    const m = { seq: 1, messageId: 'id', topic: 't', payload: Buffer.alloc(0), qos: 1 as const, retain: false, receivedAt: 0 };
    expect(Object.keys(contractAttributes(m))).toEqual([...CONTRACT_ATTRIBUTE_NAMES]);
  });
});
