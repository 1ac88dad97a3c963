/**
 * Reading sparkplug_b.proto's wire format exactly: every uint64 as a bigint, and a check that the bytes are a
 * Sparkplug payload at all before protobufjs reads them.
 */
import protobuf from 'protobufjs';
import { PAYLOAD_TYPE } from './schema.js';

/**
 * Reads every uint64 (timestamps, seq, alias, long_value, sizes) as an exact bigint. protobufjs decodes a uint64
 * to a Long when the `long` package can be required (it is a dependency of protobufjs 7, so here it always can)
 * and to a JS number, rounded beyond 2^53, when it cannot; neither is the bigint the model wants, and converting
 * a Long goes through the same bits only if every reader remembers to. Decoding through this reader makes the
 * protobufjs message hold bigints from the start, whatever protobufjs was configured with.
 */
export class ExactReader extends protobuf.BufferReader {}
Object.defineProperty(ExactReader.prototype, 'uint64', { value: readExactUint64, writable: true, configurable: true });

function readExactUint64(this: protobuf.Reader): bigint {
  // Seven bytes (49 bits) add up exactly in a number; the rare longer varint goes on in bigints.
  let low = 0;
  for (let shift = 0; shift < 49; shift += 7) {
    const b = nextByte(this);
    low += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return BigInt(low);
  }
  let value = BigInt(low);
  for (let shift = 49n; shift < 70n; shift += 7n) {
    const b = nextByte(this);
    value |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return BigInt.asUintN(64, value);
  }
  throw Error('invalid varint encoding');
}

function nextByte(r: protobuf.Reader): number {
  if (r.pos >= r.len) throw RangeError(`index out of range: ${r.pos} + 1 > ${r.len}`);
  return r.buf[r.pos++]!;
}

// ---- the wire check: protobuf that is not a Sparkplug payload

/** Deeper than this (Templates within Templates, PropertySets within PropertySets) is not taken. */
export const MAX_NESTING = 64;

interface ExpectedField {
  name: string;
  wireType: number;
  /** A repeated number field, which may also come packed (wire type 2). */
  packable: boolean;
  message?: protobuf.Type;
}

const expected = new Map<protobuf.Type, Map<number, ExpectedField>>();
function fieldsOf(type: protobuf.Type): Map<number, ExpectedField> {
  let fields = expected.get(type);
  if (!fields) {
    fields = new Map();
    for (const f of type.fieldsArray) {
      const message = f.resolvedType instanceof protobuf.Type ? f.resolvedType : undefined;
      const wireType = message ? 2 : f.resolvedType instanceof protobuf.Enum ? 0 : protobuf.types.basic[f.type as keyof typeof protobuf.types.basic]!;
      fields.set(f.id, { name: `${type.name}.${f.name}`, wireType, packable: f.repeated && wireType !== 2, message });
    }
    expected.set(type, fields);
  }
  return fields;
}

/**
 * Why these bytes are not a Sparkplug payload at the wire level, or undefined. protobufjs reads a known field
 * by its declared type whatever wire type the bytes give it (then reads on out of step, or throws), so bytes of
 * another schema could come out as a payload of nonsense: this walks the bytes first, every field of every
 * message, and refuses a known field sent with the wrong wire type, a truncated field, and nesting beyond
 * MAX_NESTING. Unknown fields (extensions) are skipped, as protobuf does.
 */
export function wireProblem(bytes: Uint8Array): string | undefined {
  try {
    walk(PAYLOAD_TYPE, bytes, { pos: 0 }, bytes.length, 0);
    return undefined;
  } catch (err) {
    if (err instanceof WireError) return err.message;
    throw err;
  }
}

class WireError extends Error {}

function walk(type: protobuf.Type, buf: Uint8Array, at: { pos: number }, end: number, depth: number): void {
  if (depth > MAX_NESTING) throw new WireError(`not a Sparkplug payload: nested deeper than ${MAX_NESTING} levels`);
  const fields = fieldsOf(type);
  while (at.pos < end) {
    const start = at.pos;
    const tag = varint(buf, at, end);
    const id = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (id === 0 || id > 0x1fffffff) throw new WireError(`not a protobuf message: field number ${id} at byte ${start}`);
    const field = fields.get(id);
    if (field && wireType !== field.wireType && !(field.packable && wireType === 2)) {
      throw new WireError(`not a Sparkplug payload: ${field.name} (field ${id}) has wire type ${wireType}, not ${field.wireType}, at byte ${start}`);
    }
    if (field?.message) {
      const length = lengthOf(buf, at, end);
      walk(field.message, buf, at, at.pos + length, depth + 1);
    } else {
      skip(buf, at, end, id, wireType, depth);
    }
  }
}

function skip(buf: Uint8Array, at: { pos: number }, end: number, id: number, wireType: number, depth: number): void {
  switch (wireType) {
    case 0:
      varint(buf, at, end);
      return;
    case 1:
      advance(at, 8, end);
      return;
    case 2:
      advance(at, lengthOf(buf, at, end), end);
      return;
    case 3: {
      // A group, which only an unknown field can be here: skipped up to its end-group tag.
      if (depth >= MAX_NESTING) throw new WireError(`not a Sparkplug payload: nested deeper than ${MAX_NESTING} levels`);
      for (;;) {
        if (at.pos >= end) throw new WireError(`not a protobuf message: group ${id} has no end`);
        const tag = varint(buf, at, end);
        const innerId = Math.floor(tag / 8);
        const innerType = tag % 8;
        if (innerType === 4) {
          if (innerId !== id) throw new WireError(`not a protobuf message: group ${id} ends as group ${innerId}`);
          return;
        }
        skip(buf, at, end, innerId, innerType, depth + 1);
      }
    }
    case 5:
      advance(at, 4, end);
      return;
    default:
      throw new WireError(`not a protobuf message: wire type ${wireType} at byte ${at.pos}`);
  }
}

/** A varint's value as a number: exact for tags and lengths, approximate beyond 2^53 (only skipped, or refused). */
function varint(buf: Uint8Array, at: { pos: number }, end: number): number {
  let value = 0;
  for (let i = 0; i < 10; i++) {
    if (at.pos >= end) throw new WireError(`not a protobuf message: truncated at byte ${at.pos}`);
    const b = buf[at.pos++]!;
    value += (b & 0x7f) * 2 ** (7 * i);
    if (b < 0x80) return value;
  }
  throw new WireError(`not a protobuf message: a varint longer than 10 bytes at byte ${at.pos - 10}`);
}

function lengthOf(buf: Uint8Array, at: { pos: number }, end: number): number {
  const length = varint(buf, at, end);
  if (length > end - at.pos) throw new WireError(`not a protobuf message: a field of ${length} bytes has only ${end - at.pos} left, at byte ${at.pos}`);
  return length;
}

function advance(at: { pos: number }, n: number, end: number): void {
  if (at.pos + n > end) throw new WireError(`not a protobuf message: truncated at byte ${at.pos}`);
  at.pos += n;
}
