import { describe, expect, it } from 'vitest';
import { externalBrokerIdentity, legacySubscriptionsKey, subscriptionMemory, subscriptionsKey, type MetaStore } from './subscription-memory.js';

function memoryMeta(entries: Record<string, string> = {}): MetaStore & { entries: Record<string, string> } {
  return {
    entries,
    getMeta: (key) => entries[key],
    setMeta: (key, value) => void (entries[key] = value),
    deleteMeta: (key) => void delete entries[key],
    metaKeys: (prefix) => Object.keys(entries).filter((k) => k.startsWith(prefix)),
  };
}

describe('externalBrokerIdentity', () => {
  it('names the same broker the same way, whatever the URL spells differently', () => {
    const one = externalBrokerIdentity('mqtt://broker.example:1883');
    for (const url of ['mqtt://Broker.Example', 'tcp://broker.example:1883/', 'mqtt://user:pw@broker.example:1883?x=1#f', 'mqtt://other:secret@BROKER.example']) {
      expect(externalBrokerIdentity(url), url).toBe(one);
    }
    expect(one).toBe('mqtt://broker.example:1883');
    expect(externalBrokerIdentity('ssl://b.example')).toBe('mqtts://b.example:8883');
    expect(externalBrokerIdentity('mqtt://[::1]:1884')).toBe('mqtt://[::1]:1884');
  });

  it('keeps what picks another broker or endpoint: scheme, port, and the WebSocket path', () => {
    const ids = ['mqtt://b.example', 'mqtts://b.example', 'mqtt://b.example:1884', 'wss://b.example/mqtt', 'wss://b.example/other', 'ws://b.example'];
    expect(new Set(ids.map(externalBrokerIdentity)).size).toBe(ids.length);
    expect(externalBrokerIdentity('wss://b.example')).toBe('wss://b.example:443/');
  });

  it('holds no credentials', () => {
    const id = externalBrokerIdentity('mqtts://ingest:pa%40ss@b.example:8883');
    expect(id).not.toMatch(/ingest|pa/);
  });
});

describe('subscriptionMemory', () => {
  it('forgets the session once the broker discarded it (a leave), under the session key and the legacy one', () => {
    const legacy = legacySubscriptionsKey('mqtt://b.example:1883');
    const key = subscriptionsKey('mqtt://b.example:1883', 'ingest');
    const meta = memoryMeta({ [legacy]: '["a/#"]', [subscriptionsKey('mqtt://b.example:1883', 'other')]: '["b/#"]' });
    const memory = subscriptionMemory(meta, key, legacy);
    expect(memory.load()).toEqual(['a/#']);
    memory.clear();
    expect(memory.load()).toBeUndefined();
    // Another session's filters stay.
    expect(Object.keys(meta.entries)).toEqual([subscriptionsKey('mqtt://b.example:1883', 'other')]);
  });

  it('saves and loads the filters of one session', () => {
    const meta = memoryMeta();
    const key = subscriptionsKey('own-mosquitto', 'ingest');
    const m = subscriptionMemory(meta, key);
    expect(m.load()).toBeUndefined();
    m.save(['a/#', 'b/#']);
    expect(m.load()).toEqual(['a/#', 'b/#']);
    expect(Object.keys(meta.entries)).toEqual(['subscriptions own-mosquitto ingest']);
  });

  it("reads an older node's key once, copying it to the session key", () => {
    const url = 'mqtt://ingest:s3cret@b.example:1883';
    const legacy = legacySubscriptionsKey(url);
    expect(legacy).toBe('subscriptions mqtt://ingest:redacted@b.example:1883');
    const meta = memoryMeta({ [legacy]: '["a/#","b/#"]' });
    const key = subscriptionsKey(externalBrokerIdentity(url), 'ingest');
    const m = subscriptionMemory(meta, key, legacy);
    expect(m.load()).toEqual(['a/#', 'b/#']);
    expect(meta.entries[key]).toBe('["a/#","b/#"]');
    meta.entries[legacy] = '["stale"]';
    expect(m.load()).toEqual(['a/#', 'b/#']);
  });

  it('deletes the keys of the older form once the filters are saved, and only those', () => {
    const other = subscriptionsKey('mqtt://b.example:1883', 'ingest');
    const meta = memoryMeta({
      'subscriptions mqtt://127.0.0.1:40001/': '["a/#"]',
      'subscriptions mqtt://127.0.0.1:40002/': '["a/#"]',
      [other]: '["x/#"]',
      spool_id: 'kept',
    });
    const key = subscriptionsKey('own-mosquitto', 'ingest');
    subscriptionMemory(meta, key).save(['a/#']);
    expect(Object.keys(meta.entries).sort()).toEqual([key, other, 'spool_id'].sort());
  });
});
