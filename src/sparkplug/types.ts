/**
 * Sparkplug B (Sparkplug 3.0.0; the schema is Eclipse Tahu's sparkplug_b.proto) as the node reads it: topics,
 * decoded payloads with every value exact, and what a host keeps of births to resolve aliases. Plain data.
 */
import type { JsonValue } from '../core/json.js';

export const SPARKPLUG_NAMESPACE = 'spBv1.0';

export const MESSAGE_TYPES = ['NBIRTH', 'NDEATH', 'DBIRTH', 'DDEATH', 'NDATA', 'DDATA', 'NCMD', 'DCMD', 'STATE'] as const;
export type MessageType = (typeof MESSAGE_TYPES)[number];

/** A Sparkplug topic: `spBv1.0/<group>/<type>/<edge>[/<device>]`, or `spBv1.0/STATE/<host>`. */
export type SparkplugTopic =
  | { type: Exclude<MessageType, 'STATE'>; group: string; edgeNode: string; device?: string }
  | { type: 'STATE'; hostId: string };

/** The data types of sparkplug_b.proto (DataType), by number, with their names as the `datatype` column shows them. */
export const DATA_TYPES: Record<number, string> = {
  0: 'Unknown', 1: 'Int8', 2: 'Int16', 3: 'Int32', 4: 'Int64', 5: 'UInt8', 6: 'UInt16', 7: 'UInt32', 8: 'UInt64',
  9: 'Float', 10: 'Double', 11: 'Boolean', 12: 'String', 13: 'DateTime', 14: 'Text', 15: 'UUID', 16: 'DataSet',
  17: 'Bytes', 18: 'File', 19: 'Template', 20: 'PropertySet', 21: 'PropertySetList',
  22: 'Int8Array', 23: 'Int16Array', 24: 'Int32Array', 25: 'Int64Array', 26: 'UInt8Array', 27: 'UInt16Array',
  28: 'UInt32Array', 29: 'UInt64Array', 30: 'FloatArray', 31: 'DoubleArray', 32: 'BooleanArray', 33: 'StringArray',
  34: 'DateTimeArray',
};

/**
 * A metric's value, exact: every integer type (8 to 64 bits, signed and unsigned) and DateTime as a bigint; Float
 * and Double as a number; Boolean; String, Text and UUID as text; Bytes and File as bytes; arrays, DataSet,
 * Template, PropertySet(List) as JSON (their 64-bit integers as decimal strings); `null` when is_null is set or no
 * value was sent.
 */
export type MetricValue =
  | { kind: 'int'; value: bigint }
  | { kind: 'float'; value: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'string'; value: string }
  | { kind: 'bytes'; value: Buffer }
  | { kind: 'json'; value: JsonValue }
  | { kind: 'null' };

/**
 * A metric's value as the payload carries it: which field of the protobuf `value` oneof was set, unconverted
 * (intValue as the uint32 sent, longValue as the uint64 sent). What it means depends on the metric's DataType,
 * which data messages usually leave to the birth (Sparkplug 3.0: the datatype SHOULD NOT be repeated in data),
 * so the conversion to a MetricValue comes after alias resolution.
 */
export type RawValue =
  | { field: 'intValue'; value: number }
  | { field: 'longValue'; value: bigint }
  | { field: 'floatValue'; value: number }
  | { field: 'doubleValue'; value: number }
  | { field: 'booleanValue'; value: boolean }
  | { field: 'stringValue'; value: string }
  | { field: 'bytesValue'; value: Buffer }
  | { field: 'datasetValue'; value: unknown }
  | { field: 'templateValue'; value: unknown }
  | { field: 'extensionValue'; value: unknown }
  | { field: 'none' };

export interface DecodedMetric {
  /** Set in births (and in data that does not use aliases). */
  name?: string;
  alias?: bigint;
  /** Epoch milliseconds. */
  timestamp?: bigint;
  /** The DataType number as sent; 0 when unset (data leaves it to the birth). */
  datatype: number;
  isHistorical: boolean;
  isTransient: boolean;
  isNull: boolean;
  raw: RawValue;
  /** MetaData and PropertySet, as JSON (64-bit integers as decimal strings), when present. */
  metadata?: JsonValue;
  properties?: JsonValue;
}

export interface DecodedPayload {
  /** Epoch milliseconds. */
  timestamp?: bigint;
  /** 0–255 on NBIRTH, data and commands; none on NDEATH. */
  seq?: bigint;
  uuid?: string;
  body?: Buffer;
  metrics: DecodedMetric[];
}

/** `spBv1.0/STATE/<host>`: `{"online": bool, "timestamp": ms}`. */
export interface StatePayload {
  online: boolean;
  timestamp?: number;
}

/** What a birth tells of one metric, to resolve later data by alias. */
export interface BirthMetric {
  name: string;
  /** The DataType number the birth gave. */
  datatype: number;
}

/** One Sparkplug message at its place in the spool, as the host sees it. */
export interface SparkplugObservation {
  /** The spool's order (SpooledMessage.seq): births apply to what comes after them. */
  spoolSeq: number;
  messageId: string;
  topic: SparkplugTopic;
  /** Unset for STATE. */
  payload?: DecodedPayload;
}

export type Resolution =
  /** Per metric of the payload, in its order: what its birth said, or undefined when nothing resolves it. */
  | { kind: 'resolved'; births: (BirthMetric | undefined)[] }
  /** An NDEATH whose bdSeq is not the last NBIRTH's: stale, ignored. */
  | { kind: 'stale_death' }
  /** A rebirth was asked for (SPARKPLUG_REBIRTH=on): route this message again after `untilMs` (monotonic ms). */
  | { kind: 'wait'; untilMs: number };

/**
 * The node as a Sparkplug host: what it keeps of births, so that aliases resolve exactly across restarts and
 * backlogs. Each sink runner's routing calls `observe` for every Sparkplug message it routes, in spool order
 * (retries aside). Births are recorded durably (once, whichever runner sees them first) and apply from their
 * place in the spool on; a new NBIRTH replaces its edge node's births, its devices' included. Data and deaths
 * resolve by alias with the births before them. `counting` is set for one caller only (the first sink's): it
 * counts seq gaps and unresolved metrics and may ask for rebirths; the others only read.
 */
export interface SparkplugHost {
  /** `mayWait` false: the caller cannot hold the message (it holds too many): resolve it now with what there is. */
  observe(o: SparkplugObservation, counting: boolean, mayWait?: boolean): Resolution;
}

/**
 * What the raw values of the structured fields hold (RawValue `datasetValue`, `templateValue`): the protobuf
 * message with its values still raw, each converted by its own column type or member datatype.
 */
export interface RawDataSet {
  numOfColumns?: bigint;
  columns: string[];
  /** DataType numbers, one per column. */
  types: number[];
  /** Cells by column; `none` for a cell without a value. */
  rows: RawValue[][];
}

export interface RawTemplate {
  version?: string;
  templateRef?: string;
  isDefinition?: boolean;
  metrics: DecodedMetric[];
  parameters: RawParameter[];
}

export interface RawParameter {
  name?: string;
  /** The DataType number as sent; 0 when unset. */
  type: number;
  raw: RawValue;
}

/** A PropertySet's values as sent, converted to JSON by their own types when the metric is decoded. */
export interface RawPropertySet {
  keys: string[];
  values: RawPropertyValue[];
}

export interface RawPropertyValue {
  type: number;
  isNull: boolean;
  raw:
    | RawValue
    | { field: 'propertysetValue'; value: RawPropertySet }
    | { field: 'propertysetsValue'; value: RawPropertySet[] };
}
