/**
 * Sparkplug B payloads as the model holds them (DecodedPayload): the protobuf decoded with Eclipse Tahu's
 * schema (schema.ts), every 64-bit field an exact bigint, each metric's value left as the field it came in
 * (RawValue; values.ts converts it once its datatype is known). And the STATE payload of a host, which is JSON.
 */
import { isUtf8 } from 'node:buffer';
import { PAYLOAD_TYPE } from './schema.js';
import { ExactReader, wireProblem } from './wire.js';
import { metricLabel, propertySetJson, SparkplugDecodeError } from './values.js';
import type { JsonValue } from '../core/json.js';
import type {
  DecodedMetric,
  DecodedPayload,
  RawDataSet,
  RawParameter,
  RawPropertySet,
  RawPropertyValue,
  RawTemplate,
  RawValue,
  StatePayload,
} from './types.js';

export { SparkplugDecodeError } from './values.js';

/** A protobufjs message as decoded: fields present on the wire are own properties, defaults sit on the prototype. */
type Msg = Record<string, unknown>;

/** The fields of each `value` oneof, in the schema's order. */
const METRIC_VALUES = ['intValue', 'longValue', 'floatValue', 'doubleValue', 'booleanValue', 'stringValue', 'bytesValue', 'datasetValue', 'templateValue', 'extensionValue'];
const SCALAR_VALUES = ['intValue', 'longValue', 'floatValue', 'doubleValue', 'booleanValue', 'stringValue', 'extensionValue'];
const PROPERTY_VALUES = [...SCALAR_VALUES, 'propertysetValue', 'propertysetsValue'];

/**
 * Decodes a Sparkplug B payload (NBIRTH, NDATA, DDEATH, …). Throws SparkplugDecodeError for bytes that are not
 * protobuf, protobuf that is not a Sparkplug payload (a known field with the wrong wire type, no Sparkplug field
 * at all, a metric with neither name nor alias), and properties that cannot be their type.
 */
export function decodePayload(bytes: Buffer): DecodedPayload {
  const problem = wireProblem(bytes);
  if (problem) throw new SparkplugDecodeError(problem);
  let m: Msg;
  try {
    m = PAYLOAD_TYPE.decode(new ExactReader(bytes)) as unknown as Msg;
  } catch (err) {
    throw new SparkplugDecodeError(`not a protobuf message: ${(err as Error).message}`);
  }
  const metrics = list(m, 'metrics').map((x, i) => metric(x, i, true));
  const out: DecodedPayload = { metrics };
  const timestamp = own<bigint>(m, 'timestamp');
  const seq = own<bigint>(m, 'seq');
  const uuid = own<string>(m, 'uuid');
  const body = own<Buffer>(m, 'body');
  if (timestamp !== undefined) out.timestamp = timestamp;
  if (seq !== undefined) out.seq = seq;
  if (uuid !== undefined) out.uuid = uuid;
  if (body !== undefined) out.body = Buffer.from(body);
  if (timestamp === undefined && seq === undefined && uuid === undefined && body === undefined && metrics.length === 0) {
    throw new SparkplugDecodeError(bytes.length === 0 ? 'not a Sparkplug payload: empty' : 'not a Sparkplug payload: none of its fields is a Sparkplug field');
  }
  return out;
}

/**
 * Decodes a host's STATE payload (Sparkplug 3.0 §4.2.3): UTF-8 JSON, an object whose `online` is a boolean and
 * whose `timestamp`, when present, is a whole number of milliseconds. Throws SparkplugDecodeError for anything
 * else (the `ONLINE`/`OFFLINE` text of Sparkplug 2 included).
 */
export function decodeState(bytes: Buffer): StatePayload {
  if (!isUtf8(bytes)) throw new SparkplugDecodeError('not a STATE payload: not UTF-8');
  let text = bytes.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a byte-order mark is not part of the JSON
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new SparkplugDecodeError('not a STATE payload: not JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new SparkplugDecodeError('not a STATE payload: not a JSON object');
  const { online, timestamp } = v as { online?: unknown; timestamp?: unknown };
  if (typeof online !== 'boolean') throw new SparkplugDecodeError('not a STATE payload: "online" is not a boolean');
  if (timestamp === undefined) return { online };
  if (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new SparkplugDecodeError('not a STATE payload: "timestamp" is not a number of milliseconds');
  }
  return { online, timestamp };
}

function metric(m: Msg, index: number, topLevel: boolean): DecodedMetric {
  const name = own<string>(m, 'name');
  const alias = own<bigint>(m, 'alias');
  if (topLevel && name === undefined && alias === undefined) {
    throw new SparkplugDecodeError(`not a Sparkplug payload: metric #${index} has neither name nor alias`);
  }
  const out: DecodedMetric = {
    datatype: own<number>(m, 'datatype') ?? 0,
    isHistorical: own<boolean>(m, 'isHistorical') ?? false,
    isTransient: own<boolean>(m, 'isTransient') ?? false,
    isNull: own<boolean>(m, 'isNull') ?? false,
    raw: rawValue(m, METRIC_VALUES),
  };
  if (name !== undefined) out.name = name;
  if (alias !== undefined) out.alias = alias;
  const timestamp = own<bigint>(m, 'timestamp');
  if (timestamp !== undefined) out.timestamp = timestamp;
  const metadata = own<Msg>(m, 'metadata');
  if (metadata !== undefined) out.metadata = metadataJson(metadata);
  const properties = own<Msg>(m, 'properties');
  if (properties !== undefined) out.properties = propertySetJson(propertySet(properties), `metric ${metricLabel(name, alias, index)}`);
  return out;
}

/** The oneof field set last (protobuf: the last one on the wire wins; a decoded message keeps fields in wire order). */
function rawValue(m: Msg, fields: readonly string[]): RawValue {
  let field: string | undefined;
  for (const key of Object.keys(m)) if (fields.includes(key)) field = key;
  if (field === undefined) return { field: 'none' };
  const value = m[field];
  switch (field) {
    case 'bytesValue':
      return { field, value: Buffer.from(value as Uint8Array) };
    case 'datasetValue':
      return { field, value: dataSet(value as Msg) };
    case 'templateValue':
      return { field, value: template(value as Msg) };
    case 'extensionValue':
      return { field, value: {} }; // its fields are extensions this schema does not name: nothing to keep
    default:
      return { field, value } as RawValue;
  }
}

function dataSet(m: Msg): RawDataSet {
  const out: RawDataSet = {
    columns: list<string>(m, 'columns'),
    types: list<number>(m, 'types'),
    rows: list(m, 'rows').map((row) => list(row, 'elements').map((cell) => rawValue(cell, SCALAR_VALUES))),
  };
  const n = own<bigint>(m, 'numOfColumns');
  if (n !== undefined) out.numOfColumns = n;
  return out;
}

function template(m: Msg): RawTemplate {
  const out: RawTemplate = {
    metrics: list(m, 'metrics').map((x, i) => metric(x, i, false)),
    parameters: list(m, 'parameters').map((p): RawParameter => {
      const param: RawParameter = { type: own<number>(p, 'type') ?? 0, raw: rawValue(p, SCALAR_VALUES) };
      const name = own<string>(p, 'name');
      if (name !== undefined) param.name = name;
      return param;
    }),
  };
  const version = own<string>(m, 'version');
  const templateRef = own<string>(m, 'templateRef');
  const isDefinition = own<boolean>(m, 'isDefinition');
  if (version !== undefined) out.version = version;
  if (templateRef !== undefined) out.templateRef = templateRef;
  if (isDefinition !== undefined) out.isDefinition = isDefinition;
  return out;
}

function propertySet(m: Msg): RawPropertySet {
  return { keys: list<string>(m, 'keys'), values: list(m, 'values').map(propertyValue) };
}

function propertyValue(m: Msg): RawPropertyValue {
  const type = own<number>(m, 'type') ?? 0;
  const isNull = own<boolean>(m, 'isNull') ?? false;
  let field: string | undefined;
  for (const key of Object.keys(m)) if (PROPERTY_VALUES.includes(key)) field = key;
  if (field === 'propertysetValue') return { type, isNull, raw: { field, value: propertySet(m[field] as Msg) } };
  if (field === 'propertysetsValue') {
    return { type, isNull, raw: { field, value: list(m[field] as Msg, 'propertyset').map(propertySet) } };
  }
  return { type, isNull, raw: rawValue(m, SCALAR_VALUES) };
}

/** MetaData by the schema's own names (is_multi_part, content_type, size, seq, file_name, …); size and seq as decimal text. */
function metadataJson(m: Msg): JsonValue {
  const out: { [key: string]: JsonValue } = {};
  for (const [from, to] of METADATA_FIELDS) {
    const v = own<string | boolean | bigint>(m, from);
    if (v !== undefined) out[to] = typeof v === 'bigint' ? v.toString() : v;
  }
  return out;
}

const METADATA_FIELDS: [string, string][] = [
  ['isMultiPart', 'is_multi_part'],
  ['contentType', 'content_type'],
  ['size', 'size'],
  ['seq', 'seq'],
  ['fileName', 'file_name'],
  ['fileType', 'file_type'],
  ['md5', 'md5'],
  ['description', 'description'],
];

function own<T>(m: Msg, key: string): T | undefined {
  return Object.hasOwn(m, key) ? (m[key] as T) : undefined;
}

function list<T = Msg>(m: Msg, key: string): T[] {
  return own<T[]>(m, key) ?? [];
}
