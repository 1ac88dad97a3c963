import { describe, it, expect } from 'vitest';
import { parseByteSize } from '../core/settings/fields.js';
import { CONFIG_KEYS, CONFIG_SHAPE, keyMeta } from './schema.js';
import { topicFilterProblem } from '../core/mqtt-topic.js';

describe('config key metadata', () => {
  it('gives every key a description, accepted values and a default or a reason it has none', () => {
    for (const name of CONFIG_KEYS) {
      const meta = keyMeta(name);
      expect(meta.description, name).not.toBe('');
      expect(meta.accepts, name).not.toBe('');
      expect(meta.default !== undefined && meta.derivedDefault !== undefined, name).toBe(false);
    }
  });

  it('parses every default with the key\'s own schema', () => {
    for (const name of CONFIG_KEYS) {
      const fallback = keyMeta(name).default;
      if (fallback === undefined) continue;
      expect(CONFIG_SHAPE[name].safeParse(fallback).success, name).toBe(true);
    }
  });

  it('marks only MQTT_PASSWORD secret today', () => {
    expect(CONFIG_KEYS.filter((name) => keyMeta(name).secret)).toEqual(['MQTT_PASSWORD']);
  });
});

describe('parseByteSize', () => {
  it.each([
    ['1024', 1024],
    ['6GiB', 6 * 1024 ** 3],
    ['6gib', 6 * 1024 ** 3],
    ['64 MiB', 64 * 1024 ** 2],
    ['1KiB', 1024],
    ['1KB', 1000],
    ['1.5MB', 1_500_000],
    ['2 gb', 2_000_000_000],
    ['10B', 10],
  ])('reads %s as %d bytes', (raw, bytes) => {
    expect(parseByteSize(raw)).toBe(bytes);
  });

  it.each(['', 'GiB', '1.5', '1.5B', '-1MiB', '6 GiB extra', '6TiB', '0x10'])('leaves %j for the schema to reject', (raw) => {
    expect(parseByteSize(raw)).toBe(raw);
  });

  it('passes YAML numbers through unchanged', () => {
    expect(parseByteSize(4096)).toBe(4096);
  });
});

describe('topicFilterProblem (MQTT 5.0 §4.7, §4.8.2)', () => {
  it.each(['#', '+', 'a/b/c', 'a/+/c', 'a/#', '+/+/#', '/', 'a//b', '/a', '$SYS/#', '$share/group/a/+/#', '$share/g/#', 'séance/ünicode'])(
    'accepts %j',
    (filter) => {
      expect(topicFilterProblem(filter)).toBeUndefined();
    },
  );

  it.each([
    ['', 'is empty'],
    ['a/#/b', 'uses "#" other than as the whole last level'],
    ['a#', 'uses "#" other than as the whole last level'],
    ['#/a', 'uses "#" other than as the whole last level'],
    ['a/b+', 'uses "+" other than as a whole level'],
    ['+a', 'uses "+" other than as a whole level'],
    ['a\u0000b', 'contains a NUL character'],
    ['$share//a', 'has an invalid share name: it must be non-empty, without "+" or "#"'],
    ['$share/g+/a', 'has an invalid share name: it must be non-empty, without "+" or "#"'],
    ['$share/g', 'needs a topic filter after $share/<group>/'],
    ['$share/g/', 'needs a topic filter after $share/<group>/'],
    ['$share/g/a/#/b', 'uses "#" other than as the whole last level'],
    ['x'.repeat(65536), 'is longer than 65535 bytes'],
  ])('rejects %j: %s', (filter, why) => {
    expect(topicFilterProblem(filter)).toBe(why);
  });
});
