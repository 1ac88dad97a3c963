/**
 * A Sparkplug B edge node for tests: it ENCODES payloads with Eclipse Tahu's sparkplug_b.proto as an edge node
 * does (births with names, datatypes and aliases; data by alias only, without datatype; deaths with bdSeq), so
 * tests publish what a real edge node would.
 *
 * Values are packed here independently of the node's decoder, from the specification's words (Sparkplug 3.0
 * §6.4.16–17): integers in the field the type names (Int8/16/32 sign-extended to 32 bits, as Tahu's Java
 * library sends them; UInt32 in int_value as the specification says, or in long_value as Tahu sends it, with
 * `uint32In: 'long'`), 64-bit values two's complement, and array types little-endian through DataView, a
 * BooleanArray as a 4-byte little-endian count then the bits, the first value in the most significant bit.
 */
import { PAYLOAD_TYPE } from '../../src/sparkplug/schema.js';
import { DATA_TYPES } from '../../src/sparkplug/types.js';

/** A DataType by number or by name (`Int32`, `DataSet`, …). */
export type DataTypeRef = number | string;

export interface EdgeDataSet {
  columns: string[];
  types: DataTypeRef[];
  /** null: a cell without a value; an EdgeRawField: that field exactly. */
  rows: (EdgeValue | EdgeRawField | null)[][];
  /** Defaults to the number of columns. */
  numOfColumns?: number | bigint;
}

export interface EdgeTemplate {
  version?: string;
  templateRef?: string;
  isDefinition?: boolean;
  metrics: EdgeMetric[];
  parameters?: { name: string; type: DataTypeRef; value?: EdgeValue }[];
}

export interface EdgeProperty {
  type: DataTypeRef;
  value?: EdgeValue | EdgePropertySet | EdgePropertySet[];
  raw?: EdgeRawField;
  isNull?: boolean;
}
export type EdgePropertySet = Record<string, EdgeProperty>;

export type EdgeValue = number | bigint | boolean | string | Buffer | EdgeDataSet | EdgeTemplate | readonly (number | bigint | boolean | string)[];

/** A raw `value` field, exactly as given (to send what a type does not: a wrong field, an odd encoding). */
export type EdgeRawField =
  | { field: 'intValue'; value: number }
  | { field: 'longValue'; value: bigint }
  | { field: 'floatValue' | 'doubleValue'; value: number }
  | { field: 'booleanValue'; value: boolean }
  | { field: 'stringValue'; value: string }
  | { field: 'bytesValue'; value: Buffer };

export interface EdgeMetric {
  name?: string;
  alias?: number | bigint;
  timestamp?: number | bigint;
  /** Sent as `datatype` unless `sendDatatype` is false; also chooses the value's encoding. */
  datatype?: DataTypeRef;
  sendDatatype?: boolean;
  value?: EdgeValue;
  raw?: EdgeRawField;
  isNull?: boolean;
  isHistorical?: boolean;
  isTransient?: boolean;
  metadata?: { isMultiPart?: boolean; contentType?: string; size?: number | bigint; seq?: number | bigint; fileName?: string; fileType?: string; md5?: string; description?: string };
  properties?: EdgePropertySet;
}

export interface EdgePayload {
  timestamp?: number | bigint;
  seq?: number | bigint;
  uuid?: string;
  body?: Buffer;
  metrics?: EdgeMetric[];
}

export interface EncodeOptions {
  /** Where a UInt32 goes: int_value (the specification) or long_value (Eclipse Tahu's libraries). */
  uint32In?: 'int' | 'long';
}

const TYPE_NUMBERS = new Map(Object.entries(DATA_TYPES).map(([n, name]) => [name, Number(n)]));

/** A DataType's number from its number or name. */
export function typeNumber(t: DataTypeRef): number {
  if (typeof t === 'number') return t;
  const n = TYPE_NUMBERS.get(t);
  if (n === undefined) throw new Error(`no Sparkplug DataType ${t}`);
  return n;
}

/** The protobuf bytes of a payload. */
export function encodeSparkplug(p: EdgePayload, opts: EncodeOptions = {}): Buffer {
  const msg: Record<string, unknown> = { metrics: (p.metrics ?? []).map((m) => metricMessage(m, opts)) };
  if (p.timestamp !== undefined) msg.timestamp = u64(p.timestamp);
  if (p.seq !== undefined) msg.seq = u64(p.seq);
  if (p.uuid !== undefined) msg.uuid = p.uuid;
  if (p.body !== undefined) msg.body = p.body;
  return Buffer.from(PAYLOAD_TYPE.encode(msg).finish());
}

/** A 64-bit field as protobufjs writes it without the `long` package: its two 32-bit halves. */
function u64(v: number | bigint): { low: number; high: number; unsigned: boolean } {
  const u = BigInt.asUintN(64, BigInt(v));
  return { low: Number(u & 0xffffffffn) | 0, high: Number(u >> 32n) | 0, unsigned: true };
}

function metricMessage(m: EdgeMetric, opts: EncodeOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (m.name !== undefined) out.name = m.name;
  if (m.alias !== undefined) out.alias = u64(m.alias);
  if (m.timestamp !== undefined) out.timestamp = u64(m.timestamp);
  const type = m.datatype === undefined ? undefined : typeNumber(m.datatype);
  if (type !== undefined && m.sendDatatype !== false) out.datatype = type;
  if (m.isHistorical !== undefined) out.isHistorical = m.isHistorical;
  if (m.isTransient !== undefined) out.isTransient = m.isTransient;
  if (m.isNull !== undefined) out.isNull = m.isNull;
  if (m.metadata) {
    const { size, seq, ...rest } = m.metadata;
    out.metadata = { ...rest, ...(size !== undefined ? { size: u64(size) } : {}), ...(seq !== undefined ? { seq: u64(seq) } : {}) };
  }
  if (m.properties) out.properties = propertySetMessage(m.properties, opts);
  if (m.raw) Object.assign(out, rawField(m.raw));
  else if (m.value !== undefined && !m.isNull) {
    if (type === undefined) throw new Error(`metric ${m.name ?? String(m.alias)}: a value needs a datatype to be encoded`);
    Object.assign(out, valueField(type, m.value, opts));
  }
  return out;
}

function rawField(r: EdgeRawField): Record<string, unknown> {
  return { [r.field]: r.field === 'longValue' ? u64(r.value) : r.value };
}

function isRaw(v: unknown): v is EdgeRawField {
  return typeof v === 'object' && v !== null && !Buffer.isBuffer(v) && !Array.isArray(v) && 'field' in v;
}

/** The `value` oneof field of a value of this type. */
export function valueField(type: number, v: EdgeValue, opts: EncodeOptions = {}): Record<string, unknown> {
  switch (type) {
    case 1:
    case 2:
    case 3:
    case 5:
    case 6:
      return { intValue: Number(v) >>> 0 }; // a negative value sign-extended to 32 bits
    case 7:
      return opts.uint32In === 'long' ? { longValue: u64(BigInt(v as number)) } : { intValue: Number(v) >>> 0 };
    case 4:
    case 8:
    case 13:
      return { longValue: u64(v as number | bigint) };
    case 9:
      return { floatValue: v };
    case 10:
      return { doubleValue: v };
    case 11:
      return { booleanValue: v };
    case 12:
    case 14:
    case 15:
      return { stringValue: v };
    case 16:
      return { datasetValue: dataSetMessage(v as EdgeDataSet, opts) };
    case 17:
    case 18:
      return { bytesValue: v };
    case 19:
      return { templateValue: templateMessage(v as EdgeTemplate, opts) };
    default:
      if (type >= 22 && type <= 34) return { bytesValue: packArray(type, v as readonly (number | bigint | boolean | string)[]) };
      throw new Error(`no encoding for a value of type ${type}`);
  }
}

function dataSetMessage(d: EdgeDataSet, opts: EncodeOptions): Record<string, unknown> {
  const types = d.types.map(typeNumber);
  return {
    numOfColumns: u64(d.numOfColumns ?? d.columns.length),
    columns: d.columns,
    types,
    rows: d.rows.map((row) => ({ elements: row.map((cell, c) => (cell === null ? {} : isRaw(cell) ? rawField(cell) : valueField(types[c]!, cell, opts))) })),
  };
}

function templateMessage(t: EdgeTemplate, opts: EncodeOptions): Record<string, unknown> {
  const out: Record<string, unknown> = { metrics: t.metrics.map((m) => metricMessage(m, opts)) };
  if (t.version !== undefined) out.version = t.version;
  if (t.templateRef !== undefined) out.templateRef = t.templateRef;
  if (t.isDefinition !== undefined) out.isDefinition = t.isDefinition;
  out.parameters = (t.parameters ?? []).map((p) => ({ name: p.name, type: typeNumber(p.type), ...(p.value === undefined ? {} : valueField(typeNumber(p.type), p.value, opts)) }));
  return out;
}

function propertySetMessage(set: EdgePropertySet, opts: EncodeOptions): Record<string, unknown> {
  const keys = Object.keys(set);
  return {
    keys,
    values: keys.map((k) => {
      const p = set[k]!;
      const type = typeNumber(p.type);
      const out: Record<string, unknown> = { type };
      if (p.isNull) out.isNull = true;
      else if (p.raw) Object.assign(out, rawField(p.raw));
      else if (type === 20) out.propertysetValue = propertySetMessage(p.value as EdgePropertySet, opts);
      else if (type === 21) out.propertysetsValue = { propertyset: (p.value as EdgePropertySet[]).map((s) => propertySetMessage(s, opts)) };
      else if (p.value !== undefined) Object.assign(out, valueField(type, p.value as EdgeValue, opts));
      return out;
    }),
  };
}

/** An array type's bytes_value, packed as Sparkplug 3.0 §6.4.17 says. */
export function packArray(type: number, items: readonly (number | bigint | boolean | string)[]): Buffer {
  if (type === 32) {
    const bytes = new Uint8Array(4 + Math.ceil(items.length / 8));
    new DataView(bytes.buffer).setUint32(0, items.length, true);
    items.forEach((b, i) => {
      if (b) bytes[4 + Math.floor(i / 8)]! |= 1 << (7 - (i % 8));
    });
    return Buffer.from(bytes);
  }
  if (type === 33) {
    const enc = new TextEncoder();
    return Buffer.concat(items.map((s) => Buffer.concat([enc.encode(String(s)), new Uint8Array([0])])));
  }
  const size = ({ 22: 1, 23: 2, 24: 4, 25: 8, 26: 1, 27: 2, 28: 4, 29: 8, 30: 4, 31: 8, 34: 8 } as Record<number, number>)[type];
  if (size === undefined) throw new Error(`type ${type} is not an array type`);
  const view = new DataView(new ArrayBuffer(items.length * size));
  items.forEach((v, i) => {
    const at = i * size;
    switch (type) {
      case 22: return view.setInt8(at, Number(v));
      case 23: return view.setInt16(at, Number(v), true);
      case 24: return view.setInt32(at, Number(v), true);
      case 25:
      case 34: return view.setBigInt64(at, BigInt(v as number | bigint), true);
      case 26: return view.setUint8(at, Number(v));
      case 27: return view.setUint16(at, Number(v), true);
      case 28: return view.setUint32(at, Number(v), true);
      case 29: return view.setBigUint64(at, BigInt(v as number | bigint), true);
      case 30: return view.setFloat32(at, Number(v), true);
      default: return view.setFloat64(at, Number(v), true);
    }
  });
  return Buffer.from(view.buffer);
}

/** A message as an edge node publishes it. */
export interface EdgeMessage {
  topic: string;
  payload: Buffer;
}

/** A metric of a birth: its name, datatype and current value (an alias is given to it). */
export interface BirthSpec {
  name: string;
  datatype: DataTypeRef;
  value?: EdgeValue;
  isNull?: boolean;
  properties?: EdgePropertySet;
  metadata?: EdgeMetric['metadata'];
}

/**
 * One edge node and its devices, as Sparkplug 3.0 §5 has them behave: NBIRTH with seq 0, bdSeq and
 * `Node Control/Rebirth`, every metric with name, datatype, value and an alias; data by alias alone without
 * datatype, seq counting up to 255 and round to 0; NDEATH with the bdSeq of its birth and no seq.
 */
export class SparkplugEdge {
  /** bdSeq of the current session; `reconnect()` moves to the next. */
  bdSeq = 0n;
  private seq = 0;
  private nextAlias = 1n;
  private readonly aliases = new Map<string, bigint>();
  private readonly born = new Map<string, DataTypeRef>();

  constructor(
    readonly group: string,
    readonly edgeNode: string,
    readonly opts: EncodeOptions & { clock?: () => number } = {},
  ) {}

  private now(): number {
    return this.opts.clock ? this.opts.clock() : Date.now();
  }

  private key(device: string | undefined, name: string): string {
    return `${device ?? ''}\u0000${name}`;
  }

  /** The alias a birth gave a metric (undefined before its birth). */
  aliasOf(name: string, device?: string): bigint | undefined {
    return this.aliases.get(this.key(device, name));
  }

  private topic(type: string, device?: string): string {
    return ['spBv1.0', this.group, type, this.edgeNode, ...(device === undefined ? [] : [device])].join('/');
  }

  private nextSeq(): number {
    const s = this.seq;
    this.seq = (this.seq + 1) % 256;
    return s;
  }

  private birthMetrics(device: string | undefined, specs: BirthSpec[]): EdgeMetric[] {
    return specs.map((s) => {
      const key = this.key(device, s.name);
      this.born.set(key, s.datatype);
      let alias = this.aliases.get(key);
      if (alias === undefined) this.aliases.set(key, (alias = this.nextAlias++));
      return { name: s.name, alias, datatype: s.datatype, value: s.value, isNull: s.isNull, properties: s.properties, metadata: s.metadata };
    });
  }

  /** The NBIRTH: seq 0, bdSeq, Node Control/Rebirth, then these metrics. */
  birth(specs: BirthSpec[]): EdgeMessage {
    this.seq = 0;
    const metrics: EdgeMetric[] = [
      { name: 'bdSeq', datatype: 'Int64', value: this.bdSeq },
      { name: 'Node Control/Rebirth', datatype: 'Boolean', value: false },
      ...this.birthMetrics(undefined, specs),
    ];
    return { topic: this.topic('NBIRTH'), payload: encodeSparkplug({ timestamp: this.now(), seq: this.nextSeq(), metrics }, this.opts) };
  }

  /** NDATA (or DDATA with a device): each metric by alias only, no name and no datatype. */
  data(values: { name: string; value?: EdgeValue; isNull?: boolean; timestamp?: number }[], device?: string): EdgeMessage {
    const metrics = values.map((v): EdgeMetric => {
      const alias = this.aliases.get(this.key(device, v.name));
      if (alias === undefined) throw new Error(`metric ${v.name} was not born`);
      const datatype = this.born.get(this.key(device, v.name));
      return { alias, datatype, sendDatatype: false, value: v.value, isNull: v.isNull, timestamp: v.timestamp };
    });
    return { topic: this.topic(device === undefined ? 'NDATA' : 'DDATA', device), payload: encodeSparkplug({ timestamp: this.now(), seq: this.nextSeq(), metrics }, this.opts) };
  }

  /** The DBIRTH of a device: its metrics with names, datatypes and aliases. */
  deviceBirth(device: string, specs: BirthSpec[]): EdgeMessage {
    return { topic: this.topic('DBIRTH', device), payload: encodeSparkplug({ timestamp: this.now(), seq: this.nextSeq(), metrics: this.birthMetrics(device, specs) }, this.opts) };
  }

  /** The DDEATH of a device: a timestamp and seq, no metrics. */
  deviceDeath(device: string): EdgeMessage {
    return { topic: this.topic('DDEATH', device), payload: encodeSparkplug({ timestamp: this.now(), seq: this.nextSeq() }, this.opts) };
  }

  /** The NDEATH (the MQTT will): the bdSeq metric alone, no seq. */
  death(): EdgeMessage {
    return { topic: this.topic('NDEATH'), payload: encodeSparkplug({ metrics: [{ name: 'bdSeq', datatype: 'Int64', value: this.bdSeq }] }, this.opts) };
  }

  /** A new MQTT session: the next bdSeq; the next birth starts seq at 0 again. */
  reconnect(): void {
    this.bdSeq += 1n;
  }
}
