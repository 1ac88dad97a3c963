import { createRequire } from 'node:module';
import v8 from 'node:v8';

/** A packet as Aedes hands it to its persistence: a PUBLISH (an aedes-packet `Packet` or mqtt-packet's object), a PUBREL, a will. */
export interface AnyPacket {
  [key: string]: unknown;
  cmd?: string;
  topic?: string;
  payload?: Buffer | string;
  qos?: number;
  messageId?: number;
  brokerId?: string;
  brokerCounter?: number;
  clientId?: string;
}

/** aedes-packet's constructor: the copy of a packet that Aedes and the reference store keep (brokerId, brokerCounter, …). */
export interface PacketConstructor {
  new (original: object, broker?: { id: string; counter: number }): AnyPacket;
  prototype: AnyPacket;
}

const require = createRequire(import.meta.url);
/** CommonJS without an ES export, as in aedes-persistence's own stores. */
export const Packet = require('aedes-packet') as PacketConstructor;

const PLAIN = 0;
const AEDES_PACKET = 1;

/**
 * A packet as stored: v8's serializer keeps Buffers as Buffers (payload, MQTT 5 correlationData), strings, numbers,
 * bigints, booleans, nested objects and arrays (properties, userProperties with string or string[] values), and
 * `undefined` members (Packet's `messageId: undefined`), so a decoded packet is deep-equal to the one stored. Whether
 * it was an aedes-packet `Packet` is kept too: it comes back as one. Function members (Aedes's `writeCallback` on the
 * packets it is writing) belong to a connection, not to the state, and are left out.
 */
export function encodePacket(packet: AnyPacket): Buffer {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(packet)) {
    if (typeof value !== 'function') fields[key] = value;
  }
  return v8.serialize([packet instanceof Packet ? AEDES_PACKET : PLAIN, fields]);
}

export function decodePacket(blob: Buffer): AnyPacket {
  const [kind, fields] = v8.deserialize(blob) as [number, Record<string, unknown>];
  return kind === AEDES_PACKET ? Object.assign(Object.create(Packet.prototype) as AnyPacket, fields) : (fields as AnyPacket);
}

/** Any other value kept whole (a subscription's options). */
export function encodeValue(value: unknown): Buffer {
  return v8.serialize(value);
}

export function decodeValue<T>(blob: Buffer): T {
  return v8.deserialize(blob) as T;
}

/**
 * A value as an SQL parameter of the untyped key columns (broker id, broker counter, packet id): `undefined` and
 * `null` are NULL, matched with `IS` as `===` matches `undefined` with `undefined` in the reference store.
 */
export function sqlKey(value: unknown): string | number | bigint | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint') return value;
  throw new TypeError(`a packet key must be a string or a number, not ${typeof value}`);
}

/** The bytes a retained message's payload holds (a string payload counted in UTF-8). */
export function payloadBytes(payload: unknown): number {
  if (typeof payload === 'string') return Buffer.byteLength(payload, 'utf8');
  if (payload instanceof Uint8Array) return payload.length;
  return 0;
}
