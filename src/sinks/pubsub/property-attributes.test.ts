import { describe, expect, it } from 'vitest';
import { addPropertyAttributes, attributeName, MAX_ATTRIBUTES } from './property-attributes.js';
import { contractAttributes } from './pubsub-sink.js';
import type { SpooledMessage } from '../../core/message.js';

const msg: SpooledMessage = { seq: 1, messageId: '01JABCDEFGHJKMNPQRSTVWXYZ0', topic: 'plant/a', payload: Buffer.from('x'), qos: 1, retain: false, receivedAt: 0 };

describe('MQTT 5 properties as Pub/Sub attributes', () => {
  it('adds mqtt_content_type and mqtt_user_<name>, a repeated name joined with commas, the contract attributes kept', () => {
    const a = contractAttributes(msg);
    const drops = addPropertyAttributes(a, { userProperties: { site: 'Zürich', tag: ['a', 'b', 'c'] }, contentType: 'application/json' });
    expect(drops).toBeUndefined();
    expect(a).toEqual({ ...contractAttributes(msg), mqtt_content_type: 'application/json', mqtt_user_site: 'Zürich', mqtt_user_tag: 'a,b,c' });
  });

  it('reduces names to [A-Za-z0-9_-], one underscore per character; the first of two names reduced alike wins', () => {
    expect(attributeName('temp°C')).toBe('mqtt_user_temp_C');
    expect(attributeName('a.b c/d-e_f9')).toBe('mqtt_user_a_b_c_d-e_f9');
    expect(attributeName('😀')).toBe('mqtt_user__');
    expect(attributeName('googX')).toBe('mqtt_user_googX'); // the prefix keeps every key clear of `goog`
    const a: Record<string, string> = {};
    expect(addPropertyAttributes(a, { userProperties: { 'a.b': '1', 'a b': '2' } })).toEqual({ name_collision: 1 });
    expect(a).toEqual({ mqtt_user_a_b: '1' });
  });

  it('never overwrites a contract attribute', () => {
    const a: Record<string, string> = { ...contractAttributes(msg), mqtt_user_x: 'kept' };
    expect(addPropertyAttributes(a, { userProperties: { x: 'other' } })).toEqual({ name_collision: 1 });
    expect(a.mqtt_user_x).toBe('kept');
    expect(a.message_id).toBe(msg.messageId);
  });

  it('drops keys over 256 bytes and values over 1,024 bytes, counting each, and keeps the rest', () => {
    const a = contractAttributes(msg);
    const fitting = 'k'.repeat(256 - 'mqtt_user_'.length);
    const drops = addPropertyAttributes(a, {
      contentType: 'é'.repeat(513),
      userProperties: { [fitting]: 'v', [fitting + 'k']: 'v', long: 'x'.repeat(1025), edge: 'é'.repeat(512), joined: ['x'.repeat(600), 'y'.repeat(500)] },
    });
    expect(drops).toEqual({ key_too_long: 1, value_too_long: 3 });
    expect(Object.keys(a).filter((k) => k.startsWith('mqtt_user_') || k === 'mqtt_content_type')).toEqual([`mqtt_user_${fitting}`, 'mqtt_user_edge']);
  });

  it('stops at 100 attributes in all, contract attributes included, and counts the rest', () => {
    const a = contractAttributes(msg);
    const userProperties = Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`p${i}`, String(i)]));
    expect(addPropertyAttributes(a, { userProperties, contentType: 'text/plain' })).toEqual({ too_many: 26 });
    expect(Object.keys(a)).toHaveLength(MAX_ATTRIBUTES);
    expect(a.mqtt_content_type).toBe('text/plain');
    expect(a.mqtt_user_p93).toBe('93');
    expect(a.mqtt_user_p94).toBeUndefined();
  });
});
