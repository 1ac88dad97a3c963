import { describe, expect, it } from 'vitest';
import { contractProblems } from './smoke.js';

const topic = 'mqtt-ingest/smoke/smoke-1';
const payload = Buffer.from('{"smoke":"smoke-1"}');
const good = {
  message_id: '01KB3W2Z3V8QK6Y7T1N0G5H2ZC',
  mqtt_topic: topic,
  mqtt_qos: '1',
  mqtt_retain: 'false',
  received_at: '2026-11-29T03:20:01.123Z',
};
const sent = { topic, payload, sentAt: Date.parse('2026-11-29T03:20:00.000Z'), now: Date.parse('2026-11-29T03:20:02.000Z') };

describe('the smoke test contract check', () => {
  it('accepts the message as the node publishes it', () => {
    expect(contractProblems({ data: payload, attributes: good }, sent)).toEqual([]);
  });

  it.each([
    ['payload', { data: Buffer.from('{"smoke":"smoke-2"}') }, 'the payload changed'],
    ['message_id', { attributes: { ...good, message_id: 'abc' } }, 'message_id is "abc", not a ULID'],
    ['mqtt_topic', { attributes: { ...good, mqtt_topic: 'x' } }, 'mqtt_topic is "x"'],
    ['mqtt_qos', { attributes: { ...good, mqtt_qos: '0' } }, 'mqtt_qos is "0", not "1"'],
    ['mqtt_retain', { attributes: { ...good, mqtt_retain: 'true' } }, 'mqtt_retain is "true"'],
    ['received_at format', { attributes: { ...good, received_at: '2026-11-29T03:20:01Z' } }, 'not RFC 3339 UTC with milliseconds'],
    ['received_at time', { attributes: { ...good, received_at: '2026-11-29T02:20:01.123Z' } }, 'more than 5 minutes from the send time'],
    ['a missing attribute', { attributes: { ...good, mqtt_qos: undefined as unknown as string } }, 'mqtt_qos is undefined'],
  ])('names a wrong %s', (_, change, problem) => {
    const msg = { data: payload, attributes: good, ...change };
    const problems = contractProblems(msg, sent);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(problem);
  });
});
