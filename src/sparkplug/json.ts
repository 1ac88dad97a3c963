/**
 * A decoded Sparkplug message as one JSON object (a Sparkplug route's `data: fields` on Pub/Sub), names and
 * datatypes resolved through the births, and the attributes that say whose message it is. Keys are the
 * table's column names; every 64-bit value (timestamps, seq, alias, Int64, UInt64, DateTime) is a decimal
 * string, which no JSON reader rounds.
 */
import type { JsonValue } from '../core/json.js';
import type { BirthMetric, DecodedPayload, SparkplugTopic, StatePayload } from './types.js';
import { metricJson, metricLabel } from './values.js';

/**
 * `{message_type, group_id, edge_node_id, device_id?, timestamp?, seq?, uuid?, body?, metrics: [...]}` for a node
 * or device message; `{message_type: "STATE", host_id, online, timestamp?}` for STATE. Each metric as
 * values.ts `metricJson`. Throws SparkplugDecodeError, naming the metric, for a value that cannot be its type.
 */
export function sparkplugJson(
  topic: SparkplugTopic,
  message: DecodedPayload | StatePayload | undefined,
  births: (BirthMetric | undefined)[] = [],
): { [key: string]: JsonValue } {
  if (topic.type === 'STATE') {
    const out: { [key: string]: JsonValue } = { message_type: 'STATE', host_id: topic.hostId };
    if (message && 'online' in message) {
      out.online = message.online;
      if (message.timestamp !== undefined) out.timestamp = String(message.timestamp);
    }
    return out;
  }
  const out: { [key: string]: JsonValue } = { message_type: topic.type, group_id: topic.group, edge_node_id: topic.edgeNode };
  if (topic.device !== undefined) out.device_id = topic.device;
  const payload = message && 'metrics' in message ? message : undefined;
  if (payload?.timestamp !== undefined) out.timestamp = payload.timestamp.toString();
  if (payload?.seq !== undefined) out.seq = payload.seq.toString();
  if (payload?.uuid !== undefined) out.uuid = payload.uuid;
  if (payload?.body !== undefined) out.body = payload.body.toString('base64');
  out.metrics = (payload?.metrics ?? []).map((m, i) => metricJson(m, births[i], `metric ${metricLabel(m.name ?? births[i]?.name, m.alias, i)}`));
  return out;
}

/**
 * Pub/Sub attributes of a Sparkplug message: `sparkplug_group`, `sparkplug_type`, `sparkplug_edge_node`,
 * `sparkplug_device`, those the topic has (STATE: the type, and the host id as `sparkplug_edge_node`, as in the
 * table).
 */
export function sparkplugAttributes(topic: SparkplugTopic): Record<string, string> {
  if (topic.type === 'STATE') return { sparkplug_type: 'STATE', sparkplug_edge_node: topic.hostId };
  const out: Record<string, string> = { sparkplug_group: topic.group, sparkplug_type: topic.type, sparkplug_edge_node: topic.edgeNode };
  if (topic.device !== undefined) out.sparkplug_device = topic.device;
  return out;
}
