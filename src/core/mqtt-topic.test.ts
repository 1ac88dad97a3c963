import { describe, expect, it } from 'vitest';
import { mqttStringProblem, topicFilterProblem, topicNameProblem } from './mqtt-topic.js';

describe('topicNameProblem (MQTT 5.0 §4.7.3, MQTT-3.3.2-2)', () => {
  it('accepts names with empty levels, spaces, $ and non-ASCII characters', () => {
    for (const t of ['a', 'a//b', '/a', 'plant/line 1/€', '$SYS/x']) expect(topicNameProblem(t)).toBeUndefined();
  });
  it('refuses empty names, wildcards, NUL and names over 65535 bytes', () => {
    expect(topicNameProblem('')).toBe('is empty');
    expect(topicNameProblem('a/+/b')).toMatch(/wildcard/);
    expect(topicNameProblem('a/#')).toMatch(/wildcard/);
    expect(topicNameProblem('a\u0000b')).toMatch(/NUL/);
    expect(topicNameProblem('é'.repeat(32768))).toMatch(/65535 bytes/);
  });
  it('agrees with the filter check on names without wildcards', () => {
    for (const t of ['a/b', '', 'x\u0000']) expect(topicNameProblem(t) === undefined).toBe(topicFilterProblem(t) === undefined);
  });
  it('mqttStringProblem refuses U+0000 and bytes that are not UTF-8', () => {
    expect(mqttStringProblem(Buffer.from([0x61, 0x00]))).toMatch(/U\+0000/);
    expect(mqttStringProblem(Buffer.from([0xc0, 0x80]))).toMatch(/UTF-8/);
  });
});
