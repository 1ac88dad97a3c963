/**
 * The BigQuery table of a Sparkplug route (`decode: sparkplug`) and its rows: one row per metric of a message,
 * its name and datatype resolved through the births, its value in exactly one of the typed value columns; a
 * message without metrics (a DDEATH, a STATE) still gives one row. insertIds are `<message_id>:<index>`, so
 * that a retry is de-duplicated row by row.
 *
 * A host's STATE row has the host id in `edge_node_id` (no group, no device) and `online` in `bool_value`:
 * the host is the edge of its own session, and the table's clustering then finds its rows as an edge node's.
 */
import { rfc3339 } from '../core/message.js';
import { stringifyJson } from '../core/json.js';
import type { TableFieldSchema } from '../sinks/bigquery/schema.js';
import type { BigQueryRow } from '../sinks/sink.js';
import type { BirthMetric, DecodedMetric, DecodedPayload, MetricValue, SparkplugTopic, StatePayload } from './types.js';
import { DATA_TYPES } from './types.js';
import { metricLabel, metricValue } from './values.js';

const column = (name: string, type: string, mode: 'REQUIRED' | 'NULLABLE', description: string): TableFieldSchema =>
  Object.freeze({ name, type, mode, description });

/** The table's columns, in row order. */
export const SPARKPLUG_TABLE_FIELDS: readonly TableFieldSchema[] = Object.freeze([
  column('message_id', 'STRING', 'REQUIRED', 'The message id given at commit to the spool; with the metric index, the insertId.'),
  column('received_at', 'TIMESTAMP', 'REQUIRED', 'When the node read the message from the broker (UTC). The table is partitioned by day on it.'),
  column('topic', 'STRING', 'REQUIRED', 'MQTT topic the message was published to.'),
  column('group_id', 'STRING', 'NULLABLE', 'Sparkplug group id; NULL for STATE.'),
  column('message_type', 'STRING', 'REQUIRED', 'NBIRTH, NDEATH, DBIRTH, DDEATH, NDATA, DDATA, NCMD, DCMD or STATE.'),
  column('edge_node_id', 'STRING', 'NULLABLE', 'Sparkplug edge node id; for STATE, the host id.'),
  column('device_id', 'STRING', 'NULLABLE', 'Sparkplug device id (DBIRTH, DDEATH, DDATA, DCMD).'),
  column('seq', 'INTEGER', 'NULLABLE', 'The payload\'s sequence number (0-255); NULL when it has none (NDEATH, STATE).'),
  column('payload_timestamp', 'TIMESTAMP', 'NULLABLE', 'The payload\'s timestamp (when the edge node sent it); NULL when absent or beyond BigQuery\'s range.'),
  column('metric_name', 'STRING', 'NULLABLE', 'The metric\'s name, from the message or else from its birth by alias; NULL when no birth resolved the alias.'),
  column('metric_alias', 'NUMERIC', 'NULLABLE', 'The metric\'s alias (an unsigned 64-bit integer) when it has one.'),
  column('datatype', 'STRING', 'NULLABLE', 'The metric\'s Sparkplug DataType (Int32, Double, DataSet, …), from the message or else from its birth; NULL when neither says.'),
  column('metric_timestamp', 'TIMESTAMP', 'NULLABLE', 'The metric\'s own timestamp; NULL when absent or beyond BigQuery\'s range.'),
  column('is_historical', 'BOOLEAN', 'NULLABLE', 'The metric\'s is_historical flag.'),
  column('is_transient', 'BOOLEAN', 'NULLABLE', 'The metric\'s is_transient flag.'),
  column('is_null', 'BOOLEAN', 'NULLABLE', 'The metric\'s is_null flag: the value is null and every value column NULL.'),
  column('int_value', 'NUMERIC', 'NULLABLE', 'Every integer type, exactly (Int8 to Int64, UInt8 to UInt64), and DateTime as milliseconds since the epoch. An unresolved integer as unsigned.'),
  column('float_value', 'FLOAT', 'NULLABLE', 'Float and Double (a Float as the shortest decimal of its 32 bits); NaN and infinities go to string_value.'),
  column('bool_value', 'BOOLEAN', 'NULLABLE', 'Boolean; for STATE, whether the host is online.'),
  column('string_value', 'STRING', 'NULLABLE', 'String, Text and UUID; and NaN, Infinity or -Infinity for a Float or Double that is one.'),
  column('bytes_value', 'BYTES', 'NULLABLE', 'Bytes and File.'),
  column('json_value', 'JSON', 'NULLABLE', 'Arrays, DataSet ({columns, types, rows}) and Template as JSON, 64-bit integers as decimal strings.'),
]);

export const SPARKPLUG_TABLE_PARTITIONING = Object.freeze({ type: 'DAY', field: 'received_at' } as const);
export const SPARKPLUG_TABLE_CLUSTERING = Object.freeze({ fields: Object.freeze(['edge_node_id', 'device_id', 'metric_name']) });

/** The body of `tables.insert` for a Sparkplug route's table, without `tableReference` (the caller names the table). */
export function sparkplugTableResource(route?: string): {
  schema: { fields: TableFieldSchema[] };
  timePartitioning: { type: 'DAY'; field: 'received_at' };
  clustering: { fields: string[] };
  description: string;
} {
  return {
    schema: { fields: SPARKPLUG_TABLE_FIELDS.map((f) => ({ ...f })) },
    timePartitioning: { ...SPARKPLUG_TABLE_PARTITIONING },
    clustering: { fields: [...SPARKPLUG_TABLE_CLUSTERING.fields] },
    description: `Sparkplug B metrics${route === undefined ? '' : ` of route ${route}`}, one row per metric, decoded by mqtt-ingest.`,
  };
}

/**
 * The rows of one Sparkplug message: `payload` for a node or device message, `state` for STATE (neither: the
 * message's columns alone); `births` per metric, in the payload's order, what resolution found. Throws
 * SparkplugDecodeError, naming the metric, for a value that cannot be its datatype.
 */
export function sparkplugRows(
  msg: { messageId: string; receivedAt: number; topic: string },
  topic: SparkplugTopic,
  payload: DecodedPayload | undefined,
  state: StatePayload | undefined,
  births: (BirthMetric | undefined)[],
): { insertId: string; row: BigQueryRow }[] {
  const message: BigQueryRow = {
    message_id: msg.messageId,
    received_at: rfc3339(msg.receivedAt),
    topic: msg.topic,
    group_id: topic.type === 'STATE' ? null : topic.group,
    message_type: topic.type,
    edge_node_id: topic.type === 'STATE' ? topic.hostId : topic.edgeNode,
    device_id: topic.type === 'STATE' ? null : (topic.device ?? null),
    seq: payload?.seq !== undefined && payload.seq <= INT64_MAX ? payload.seq.toString() : null,
    payload_timestamp: timestampCell(payload?.timestamp ?? (state?.timestamp === undefined ? undefined : BigInt(state.timestamp))),
  };
  if (state) return [{ insertId: `${msg.messageId}:0`, row: { ...message, ...NO_METRIC, bool_value: state.online } }];
  if (!payload || payload.metrics.length === 0) return [{ insertId: `${msg.messageId}:0`, row: { ...message, ...NO_METRIC } }];
  return payload.metrics.map((m, i) => ({ insertId: `${msg.messageId}:${i}`, row: metricRow(message, m, births[i], i) }));
}

const INT64_MAX = 2n ** 63n - 1n;
/** TIMESTAMP's range: 0001-01-01 to 9999-12-31 UTC, in milliseconds. */
const TIMESTAMP_MIN_MS = -62_135_596_800_000n;
const TIMESTAMP_END_MS = 253_402_300_800_000n;

const NO_VALUE = Object.freeze({ int_value: null, float_value: null, bool_value: null, string_value: null, bytes_value: null, json_value: null });
const NO_METRIC: BigQueryRow = Object.freeze({
  metric_name: null,
  metric_alias: null,
  datatype: null,
  metric_timestamp: null,
  is_historical: null,
  is_transient: null,
  is_null: null,
  ...NO_VALUE,
});

/**
 * One metric's row: the message's columns, then the metric's, written out in one literal. Spreading the message's
 * and the value's columns into each row cost about 25 µs per metric (V8 copies from frozen and differently shaped
 * objects on a slow path), more than decoding the whole payload.
 */
function metricRow(message: BigQueryRow, m: DecodedMetric, birth: BirthMetric | undefined, index: number): BigQueryRow {
  const name = m.name ?? birth?.name;
  const datatype = m.datatype || birth?.datatype || 0;
  const value = metricValue(m.raw, datatype, m.isNull, metricLabel(name, m.alias, index));
  const row: BigQueryRow = {
    message_id: message.message_id!,
    received_at: message.received_at!,
    topic: message.topic!,
    group_id: message.group_id!,
    message_type: message.message_type!,
    edge_node_id: message.edge_node_id!,
    device_id: message.device_id!,
    seq: message.seq!,
    payload_timestamp: message.payload_timestamp!,
    metric_name: name ?? null,
    metric_alias: m.alias === undefined ? null : m.alias.toString(),
    datatype: datatype === 0 ? null : (DATA_TYPES[datatype] ?? String(datatype)),
    metric_timestamp: timestampCell(m.timestamp),
    is_historical: m.isHistorical,
    is_transient: m.isTransient,
    is_null: m.isNull,
    int_value: null,
    float_value: null,
    bool_value: null,
    string_value: null,
    bytes_value: null,
    json_value: null,
  };
  setValue(row, value);
  return row;
}

/** The value in its one column: integers as decimal text (NUMERIC), bytes in base64 (BYTES), JSON as its text. */
function setValue(row: BigQueryRow, v: MetricValue): void {
  switch (v.kind) {
    case 'int':
      row.int_value = v.value.toString();
      return;
    case 'float':
      if (Number.isFinite(v.value)) row.float_value = v.value;
      else row.string_value = String(v.value);
      return;
    case 'bool':
      row.bool_value = v.value;
      return;
    case 'string':
      row.string_value = v.value;
      return;
    case 'bytes':
      row.bytes_value = v.value.toString('base64');
      return;
    case 'json':
      row.json_value = stringifyJson(v.value);
      return;
    case 'null':
      return;
  }
}

/** RFC 3339 for TIMESTAMP, or null when absent or outside BigQuery's range (the JSON keeps the exact value). */
function timestampCell(ms: bigint | undefined): string | null {
  if (ms === undefined || ms < TIMESTAMP_MIN_MS || ms >= TIMESTAMP_END_MS) return null;
  return rfc3339(Number(ms));
}
