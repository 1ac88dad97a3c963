/**
 * A metric's value by its DataType (Sparkplug 3.0 §6.4.16, "Datatype Details"), exactly: the raw field the
 * payload carried, read as the type says. Data messages usually leave the type to the birth, so this runs after
 * alias resolution, with the birth's datatype when the metric has none.
 *
 * Where senders differ, both readings are taken: Eclipse Tahu's Java and JavaScript libraries send a UInt32 in
 * long_value where the specification says uint32, and a negative Int8/16/32 sign-extended to 32 bits where
 * others send only its low bits; every other mismatch of field and type is refused, naming the metric.
 */
import type { JsonValue } from '../core/json.js';
import {
  DATA_TYPES,
  type BirthMetric,
  type DecodedMetric,
  type MetricValue,
  type RawDataSet,
  type RawPropertySet,
  type RawPropertyValue,
  type RawTemplate,
  type RawValue,
} from './types.js';

/** Bytes, a value or a topic that Sparkplug B does not allow; the message says why, briefly. */
export class SparkplugDecodeError extends Error {
  override name = 'SparkplugDecodeError';
}

/** Types whose integers are 64 bits wide: in JSON their values are decimal strings, which no reader rounds. */
const WIDE_TYPES = new Set([4, 8, 13, 25, 29, 34]);
/** The column types a DataSet may have (Sparkplug 3.0 §6.4.6). */
const DATASET_TYPES = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);

/**
 * The value of a metric whose DataType is `datatype` (the metric's, or else its birth's; 0 when neither says,
 * and then the raw field decides: intValue and longValue as unsigned integers, and so on). `metric` names the
 * metric in errors (metricLabel). Throws SparkplugDecodeError when the value cannot be the type.
 */
export function metricValue(raw: RawValue, datatype: number, isNull: boolean, metric?: string): MetricValue {
  if (isNull || raw.field === 'none') return { kind: 'null' };
  return convert(raw, datatype, metric === undefined ? 'metric' : `metric ${metric}`);
}

/** How errors name a metric: its name, else its alias, else its place in the payload. */
export function metricLabel(name: string | undefined, alias: bigint | undefined, index: number): string {
  return name !== undefined ? JSON.stringify(name) : alias !== undefined ? `with alias ${alias}` : `#${index}`;
}

/** The value as JSON: 64-bit integers (and DateTime) as decimal strings, bytes in base64, a non-finite float as its name. */
export function valueJson(raw: RawValue, datatype: number, isNull: boolean, where: string): JsonValue {
  if (isNull || raw.field === 'none') return null;
  return toJson(convert(raw, datatype, where), WIDE_TYPES.has(datatype) || (datatype === 0 && raw.field === 'longValue'));
}

/** A MetricValue as JSON; `wide` when its integers are 64-bit (Int64, UInt64, DateTime, or a long_value). */
export function toJson(v: MetricValue, wide: boolean): JsonValue {
  switch (v.kind) {
    case 'int':
      return wide ? v.value.toString() : Number(v.value);
    case 'float':
      return jsonNumber(v.value);
    case 'bytes':
      return v.value.toString('base64');
    case 'null':
      return null;
    default:
      return v.value;
  }
}

/** JSON has no NaN or infinities: they are written as their names. */
export function jsonNumber(x: number): JsonValue {
  return Number.isFinite(x) ? x : String(x);
}

/** The datatype's name, or null for 0 (unknown, unset). */
export function typeName(datatype: number): string | null {
  return datatype === 0 ? null : (DATA_TYPES[datatype] ?? String(datatype));
}

/**
 * One metric as JSON, its name and datatype from the birth when it has none: `name`, `alias`, `timestamp`,
 * `datatype`, `value`, the three flags, `metadata`, `properties`. The JSON of Templates' members, and of a
 * message's metrics.
 */
export function metricJson(m: DecodedMetric, birth: BirthMetric | undefined, where: string): { [key: string]: JsonValue } {
  const datatype = m.datatype || birth?.datatype || 0;
  const out: { [key: string]: JsonValue } = { name: m.name ?? birth?.name ?? null };
  if (m.alias !== undefined) out.alias = m.alias.toString();
  if (m.timestamp !== undefined) out.timestamp = m.timestamp.toString();
  out.datatype = typeName(datatype);
  out.value = valueJson(m.raw, datatype, m.isNull, where);
  out.is_historical = m.isHistorical;
  out.is_transient = m.isTransient;
  out.is_null = m.isNull;
  if (m.metadata !== undefined) out.metadata = m.metadata;
  if (m.properties !== undefined) out.properties = m.properties;
  return out;
}

/** A PropertySet as JSON: each key to `{type, value}`, the value by the property's own type. */
export function propertySetJson(set: RawPropertySet, where: string): JsonValue {
  if (set.keys.length !== set.values.length) {
    throw new SparkplugDecodeError(`${where}: a PropertySet of ${set.keys.length} keys and ${set.values.length} values`);
  }
  // fromEntries defines own properties, so a key such as __proto__ stays data.
  return Object.fromEntries(set.keys.map((key, i) => [key, propertyValueJson(set.values[i]!, `${where}, property ${JSON.stringify(key)}`)]));
}

function propertyValueJson(p: RawPropertyValue, where: string): JsonValue {
  const type = typeName(p.type);
  const raw = p.raw;
  if (p.isNull || raw.field === 'none') return { type, value: null };
  if (raw.field === 'propertysetValue' || raw.field === 'propertysetsValue') {
    const want = raw.field === 'propertysetValue' ? 20 : 21;
    if (p.type !== want && p.type !== 0) throw mismatch(where, p.type, raw.field);
    const value = raw.field === 'propertysetValue' ? propertySetJson(raw.value, where) : raw.value.map((s) => propertySetJson(s, where));
    return { type: typeName(want), value };
  }
  if (p.type === 20 || p.type === 21) throw mismatch(where, p.type, raw.field);
  return { type, value: valueJson(raw, p.type, false, where) };
}

function convert(raw: RawValue, datatype: number, where: string): MetricValue {
  switch (datatype) {
    case 0:
      return byField(raw, where);
    case 1:
    case 2:
    case 3:
      return { kind: 'int', value: signed(raw, datatype, 4 << datatype, where) }; // 8, 16, 32 bits
    case 5:
    case 6:
    case 7:
      return { kind: 'int', value: unsigned(raw, datatype, 8 << (datatype - 5), where) };
    case 4:
    case 13: // DateTime: ms since the epoch, which Java sends two's complement before 1970
      return { kind: 'int', value: BigInt.asIntN(64, long(raw, datatype, where)) };
    case 8:
      return { kind: 'int', value: long(raw, datatype, where) };
    case 9:
      if (raw.field !== 'floatValue') throw mismatch(where, datatype, raw.field);
      return { kind: 'float', value: float32(raw.value) };
    case 10:
      if (raw.field !== 'doubleValue') throw mismatch(where, datatype, raw.field);
      return { kind: 'float', value: raw.value };
    case 11:
      if (raw.field !== 'booleanValue') throw mismatch(where, datatype, raw.field);
      return { kind: 'bool', value: raw.value };
    case 12:
    case 14:
    case 15:
      if (raw.field !== 'stringValue') throw mismatch(where, datatype, raw.field);
      return { kind: 'string', value: raw.value };
    case 16:
      if (raw.field !== 'datasetValue') throw mismatch(where, datatype, raw.field);
      return { kind: 'json', value: dataSetJson(raw.value as RawDataSet, where) };
    case 17:
    case 18:
      if (raw.field !== 'bytesValue') throw mismatch(where, datatype, raw.field);
      return { kind: 'bytes', value: raw.value };
    case 19:
      if (raw.field !== 'templateValue') throw mismatch(where, datatype, raw.field);
      return { kind: 'json', value: templateJson(raw.value as RawTemplate, where) };
    default:
      if (datatype >= 22 && datatype <= 34) {
        if (raw.field !== 'bytesValue') throw mismatch(where, datatype, raw.field);
        return { kind: 'json', value: arrayJson(datatype, raw.value, where) };
      }
      // 20 and 21 (PropertySet, PropertySetList) are property values: a metric has no field to carry them.
      throw new SparkplugDecodeError(`${where}: datatype ${typeName(datatype)} cannot be a metric's value`);
  }
}

/** A value whose datatype nobody gave (an alias no birth resolved): what its field holds, integers unsigned. */
function byField(raw: RawValue, where: string): MetricValue {
  switch (raw.field) {
    case 'intValue':
      return { kind: 'int', value: BigInt(raw.value) };
    case 'longValue':
      return { kind: 'int', value: raw.value };
    case 'floatValue':
      return { kind: 'float', value: float32(raw.value) };
    case 'doubleValue':
      return { kind: 'float', value: raw.value };
    case 'booleanValue':
      return { kind: 'bool', value: raw.value };
    case 'stringValue':
      return { kind: 'string', value: raw.value };
    case 'bytesValue':
      return { kind: 'bytes', value: raw.value };
    case 'datasetValue':
      return { kind: 'json', value: dataSetJson(raw.value as RawDataSet, where) };
    case 'templateValue':
      return { kind: 'json', value: templateJson(raw.value as RawTemplate, where) };
    case 'none':
      return { kind: 'null' };
    default:
      throw new SparkplugDecodeError(`${where}: an extension value, which has no meaning without its datatype`);
  }
}

function signed(raw: RawValue, datatype: number, bits: number, where: string): bigint {
  const [v, sourceBits] = integerField(raw, datatype, where);
  const value = BigInt.asIntN(bits, v);
  const high = v >> BigInt(bits);
  // Its low bits alone, or sign-extended to the field's width: either is the two's complement of the type's width.
  if (high === 0n || (value < 0n && high === (1n << BigInt(sourceBits - bits)) - 1n)) return value;
  throw new SparkplugDecodeError(`${where}: ${v} (in ${raw.field}) is not an ${DATA_TYPES[datatype]}`);
}

function unsigned(raw: RawValue, datatype: number, bits: number, where: string): bigint {
  const [v] = integerField(raw, datatype, where);
  if (v < 1n << BigInt(bits)) return v;
  throw new SparkplugDecodeError(`${where}: ${v} (in ${raw.field}) is not a ${DATA_TYPES[datatype]}`);
}

function integerField(raw: RawValue, datatype: number, where: string): [bigint, number] {
  if (raw.field === 'intValue') return [BigInt(raw.value), 32];
  if (raw.field === 'longValue') return [raw.value, 64];
  throw mismatch(where, datatype, raw.field);
}

function long(raw: RawValue, datatype: number, where: string): bigint {
  if (raw.field !== 'longValue') throw mismatch(where, datatype, raw.field);
  return raw.value;
}

function mismatch(where: string, datatype: number, field: string): SparkplugDecodeError {
  return new SparkplugDecodeError(`${where}: a ${typeName(datatype) ?? 'value'} cannot be sent in ${field}`);
}

/**
 * A Float as the shortest decimal that reads back as the same 32-bit float (what Java's Float.toString and the
 * sender's own display show: 1.23, not 1.2300000190734863). Reading it into a float again gives the same bits.
 */
export function float32(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  for (let digits = 1; digits < 9; digits++) {
    const shorter = Number(x.toPrecision(digits));
    if (Math.fround(shorter) === x) return shorter;
  }
  return x;
}

/** A DataSet as `{columns, types, rows}`, types by name, each cell by its column's type (null for an empty cell). */
function dataSetJson(d: RawDataSet, where: string): JsonValue {
  const n = d.columns.length;
  if (d.types.length !== n) throw new SparkplugDecodeError(`${where}: a DataSet of ${n} columns and ${d.types.length} types`);
  if (d.numOfColumns !== undefined && d.numOfColumns !== BigInt(n)) {
    throw new SparkplugDecodeError(`${where}: a DataSet of ${n} columns says num_of_columns ${d.numOfColumns}`);
  }
  for (const t of d.types) {
    if (!DATASET_TYPES.has(t)) throw new SparkplugDecodeError(`${where}: a DataSet column cannot be of type ${typeName(t) ?? 'Unknown'}`);
  }
  const rows = d.rows.map((row, r) => {
    if (row.length !== n) throw new SparkplugDecodeError(`${where}: DataSet row ${r} has ${row.length} values for ${n} columns`);
    return row.map((cell, c) => valueJson(cell, d.types[c]!, false, `${where}, DataSet row ${r} column ${JSON.stringify(d.columns[c])}`));
  });
  return { columns: d.columns, types: d.types.map((t) => DATA_TYPES[t]!), rows };
}

/** A Template as JSON: version, template_ref, is_definition, its members (converted each by its datatype) and parameters. */
function templateJson(t: RawTemplate, where: string): JsonValue {
  const out: { [key: string]: JsonValue } = {};
  if (t.version !== undefined) out.version = t.version;
  if (t.templateRef !== undefined) out.template_ref = t.templateRef;
  out.is_definition = t.isDefinition ?? false;
  out.metrics = t.metrics.map((m, i) => metricJson(m, undefined, `${where}, member ${m.name === undefined ? `#${i}` : JSON.stringify(m.name)}`));
  out.parameters = t.parameters.map((p, i) => ({
    name: p.name ?? null,
    type: typeName(p.type),
    value: valueJson(p.raw, p.type, false, `${where}, parameter ${p.name === undefined ? `#${i}` : JSON.stringify(p.name)}`),
  }));
  return out;
}

/**
 * An array type's bytes_value as a JSON array (Sparkplug 3.0 §6.4.17): elements packed little-endian, 64-bit ones
 * as decimal strings; BooleanArray a 4-byte little-endian count, then the bits, the first value in each byte's
 * most significant bit; StringArray each string UTF-8 and null-terminated; DateTimeArray 8-byte ms.
 */
function arrayJson(datatype: number, b: Buffer, where: string): JsonValue[] {
  switch (datatype) {
    case 22:
      return packed(b, 1, datatype, where, (o) => b.readInt8(o));
    case 23:
      return packed(b, 2, datatype, where, (o) => b.readInt16LE(o));
    case 24:
      return packed(b, 4, datatype, where, (o) => b.readInt32LE(o));
    case 25:
    case 34:
      return packed(b, 8, datatype, where, (o) => b.readBigInt64LE(o).toString());
    case 26:
      return packed(b, 1, datatype, where, (o) => b.readUInt8(o));
    case 27:
      return packed(b, 2, datatype, where, (o) => b.readUInt16LE(o));
    case 28:
      return packed(b, 4, datatype, where, (o) => b.readUInt32LE(o));
    case 29:
      return packed(b, 8, datatype, where, (o) => b.readBigUInt64LE(o).toString());
    case 30:
      return packed(b, 4, datatype, where, (o) => jsonNumber(float32(b.readFloatLE(o))));
    case 31:
      return packed(b, 8, datatype, where, (o) => jsonNumber(b.readDoubleLE(o)));
    case 32:
      return booleans(b, where);
    default:
      return strings(b, where);
  }
}

function packed(b: Buffer, size: number, datatype: number, where: string, read: (offset: number) => JsonValue): JsonValue[] {
  if (b.length % size !== 0) {
    throw new SparkplugDecodeError(`${where}: a ${DATA_TYPES[datatype]} of ${b.length} bytes, not a whole number of ${size}-byte elements`);
  }
  const out: JsonValue[] = new Array(b.length / size);
  for (let i = 0; i < out.length; i++) out[i] = read(i * size);
  return out;
}

function booleans(b: Buffer, where: string): boolean[] {
  if (b.length < 4) throw new SparkplugDecodeError(`${where}: a BooleanArray of ${b.length} bytes has no 4-byte count`);
  const count = b.readUInt32LE(0);
  const need = 4 + Math.ceil(count / 8);
  if (b.length !== need) throw new SparkplugDecodeError(`${where}: a BooleanArray of ${count} values takes ${need} bytes, not ${b.length}`);
  const out: boolean[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = (b[4 + (i >> 3)]! & (0x80 >> (i & 7))) !== 0;
  return out;
}

function strings(b: Buffer, where: string): string[] {
  if (b.length > 0 && b[b.length - 1] !== 0) throw new SparkplugDecodeError(`${where}: a StringArray whose last string has no terminating null`);
  const out: string[] = [];
  for (let start = 0; start < b.length; ) {
    const end = b.indexOf(0, start);
    out.push(b.toString('utf8', start, end));
    start = end + 1;
  }
  return out;
}
