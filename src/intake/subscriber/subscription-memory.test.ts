import { describe, expect, it } from 'vitest';
import { externalBrokerIdentity, legacySubscriptionsKey, otherSessions, OWN_MOSQUITTO, subscriptionMemory, subscriptionsKey, type MetaStore } from './subscription-memory.js';

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

describe('otherSessions', () => {
  const broker = 'mqtt://b.example:1883';

  it("finds the same broker's sessions under other client ids, and only those", () => {
    const meta = memoryMeta({
      [subscriptionsKey(broker, 'ingest-new')]: '["a/#"]',
      [subscriptionsKey(broker, 'ingest-old')]: '["$share/g/a/#","b/#"]',
      [subscriptionsKey(broker, 'an id with spaces')]: '["c/#"]',
      [subscriptionsKey('mqtt://b.example:1884', 'ingest-old')]: '["a/#"]',
      [subscriptionsKey('wss://b.example:443/', 'ingest-ws')]: '["a/#"]',
      [legacySubscriptionsKey('mqtt://b.example:1883')]: '["a/#"]',
      spool_id: 'x',
    });
    expect(otherSessions(meta, broker, 'ingest-new')).toEqual([
      { clientId: 'an id with spaces', filters: ['c/#'], key: subscriptionsKey(broker, 'an id with spaces') },
      { clientId: 'ingest-old', filters: ['$share/g/a/#', 'b/#'], key: subscriptionsKey(broker, 'ingest-old') },
    ]);
    expect(otherSessions(meta, OWN_MOSQUITTO, 'ingest-new')).toEqual([]);
  });

  it('finds none when the only session is the current one', () => {
    const meta = memoryMeta({ [subscriptionsKey(OWN_MOSQUITTO, 'ingest')]: '["a/#"]' });
    expect(otherSessions(meta, OWN_MOSQUITTO, 'ingest')).toEqual([]);
    expect(otherSessions(meta, OWN_MOSQUITTO, 'ingest-2').map((s) => s.clientId)).toEqual(['ingest']);
  });

  it('leaves alone an entry the subscriber cannot have written', () => {
    const meta = memoryMeta({
      [subscriptionsKey(broker, 'a')]: 'not json',
      [subscriptionsKey(broker, 'b')]: '[]',
      [subscriptionsKey(broker, 'c')]: '{"x":1}',
      [subscriptionsKey(broker, 'd')]: '["ok", 2]',
      [subscriptionsKey(broker, 'e')]: '["e/#"]',
    });
    expect(otherSessions(meta, broker, 'now').map((s) => s.clientId)).toEqual(['e']);
  });

  it("does not take a broker whose identity starts like this one's for the same broker", () => {
    const meta = memoryMeta({ [subscriptionsKey('wss://b.example:443/mqtt', 'x')]: '["a/#"]' });
    expect(otherSessions(meta, 'wss://b.example:443/', 'now')).toEqual([]);
    expect(otherSessions(meta, 'wss://b.example:443/mqtt', 'now').map((s) => s.clientId)).toEqual(['x']);
  });
});
