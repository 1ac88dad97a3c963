import type { MessageProperties } from '../../core/message.js';

/**
 * A message's MQTT 5 properties as Pub/Sub attributes (docs/pubsub.md): `mqtt_content_type`, and
 * `mqtt_user_<name>` per user property. Pub/Sub takes at most 100 attributes per message, keys of at most
 * 256 bytes not starting with `goog`, values of at most 1,024 bytes; MQTT allows far more. What does not fit
 * is left out and counted (mqtt_ingest_properties_dropped_total), never the message itself.
 */
export const CONTENT_TYPE_ATTRIBUTE = 'mqtt_content_type';
export const USER_PROPERTY_PREFIX = 'mqtt_user_';
export const MAX_ATTRIBUTES = 100;
export const MAX_ATTRIBUTE_KEY_BYTES = 256;
/** Pub/Sub's limit per attribute value (as MAX_ATTRIBUTE_VALUE_BYTES in outgoing.ts). */
const MAX_VALUE_BYTES = 1024;

/**
 * Why a property was left out: `too_many` (past 100 attributes), `key_too_long`, `value_too_long`,
 * `name_collision` (its reduced name is another property's), `message_too_large` (the message with its
 * property attributes would pass Pub/Sub's 10 MB; it went without them).
 */
export type PropertyDropReason = 'too_many' | 'key_too_long' | 'value_too_long' | 'name_collision' | 'message_too_large';

export type PropertyDrops = Partial<Record<PropertyDropReason, number>>;

/**
 * A user property name reduced to what Pub/Sub keeps readable: every character outside [A-Za-z0-9_-]
 * becomes `_` (one per code point: `temp°C` is `temp_C`).
 */
export function attributeName(name: string): string {
  return USER_PROPERTY_PREFIX + name.replace(/[^A-Za-z0-9_-]/gu, '_');
}

/**
 * Adds the property attributes to `attributes` (the contract's, which are never overwritten): the content
 * type first, then the user properties in the order they came. A repeated name's values are joined with
 * commas, in order. Returns what was left out, per reason; undefined when nothing was.
 */
export function addPropertyAttributes(attributes: Record<string, string>, p: MessageProperties): PropertyDrops | undefined {
  let drops: PropertyDrops | undefined;
  const drop = (reason: PropertyDropReason) => {
    drops ??= {};
    drops[reason] = (drops[reason] ?? 0) + 1;
  };
  let count = 0;
  for (const _ in attributes) count += 1;
  const add = (key: string, value: string) => {
    if (key in attributes) return drop('name_collision');
    if (Buffer.byteLength(key) > MAX_ATTRIBUTE_KEY_BYTES) return drop('key_too_long');
    if (Buffer.byteLength(value) > MAX_VALUE_BYTES) return drop('value_too_long');
    if (count >= MAX_ATTRIBUTES) return drop('too_many');
    attributes[key] = value;
    count += 1;
  };
  if (p.contentType !== undefined) add(CONTENT_TYPE_ATTRIBUTE, p.contentType);
  const user = p.userProperties;
  if (user !== undefined) {
    for (const name of Object.keys(user)) {
      const value = user[name]!;
      add(attributeName(name), typeof value === 'string' ? value : value.join(','));
    }
  }
  return drops;
}
