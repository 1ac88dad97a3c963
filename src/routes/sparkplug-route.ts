/**
 * What a `decode: sparkplug` route makes of a message (docs/sparkplug.md): the topic and payload decoded, the
 * aliases resolved by the host with the births before the message in the spool, then one BigQuery row per
 * metric, the decoded message as JSON (Pub/Sub `data: fields`, the NDJSON line) and the Sparkplug attributes.
 */
import { stringifyJson } from '../core/json.js';
import { sparkplugAttributes, sparkplugJson } from '../sparkplug/json.js';
import { decodePayload, decodeState } from '../sparkplug/payload.js';
import { sparkplugRows } from '../sparkplug/rows.js';
import { parseSparkplugTopic } from '../sparkplug/topic.js';
import type { BirthMetric, DecodedPayload, SparkplugHost, StatePayload } from '../sparkplug/types.js';
import type { RouteTargets } from '../sinks/sink.js';
import { orderingKey } from './template.js';
import type { RoutableMessage, Route } from './types.js';

export type SparkplugOutcome =
  | { kind: 'routed'; targets: RouteTargets; rows: number }
  | { kind: 'dead_letter'; reason: 'decode_failed' | 'field_invalid'; detail: string }
  | { kind: 'stale_death' }
  | { kind: 'wait'; untilMs: number };

/**
 * Without a host (`routes test`, offline) a birth names its own metrics and nothing else resolves: data shows its
 * aliases without names, as it would after a restart of a node that never saw the births.
 */
function ownNames(payload: DecodedPayload | undefined): (BirthMetric | undefined)[] {
  return (payload?.metrics ?? []).map((m) => (m.name !== undefined ? { name: m.name, datatype: m.datatype } : undefined));
}

export function routeSparkplug(
  route: Route,
  msg: RoutableMessage,
  variables: Record<string, string>,
  host: SparkplugHost | undefined,
  how: { counting?: boolean; mayWait?: boolean },
): SparkplugOutcome {
  const topic = parseSparkplugTopic(msg.topic);
  if (!topic) {
    return {
      kind: 'dead_letter',
      reason: 'decode_failed',
      detail: `topic ${JSON.stringify(msg.topic)} is not a Sparkplug B topic (spBv1.0/<group>/<type>/<edge node>[/<device>], or spBv1.0/STATE/<host>)`,
    };
  }
  let payload: DecodedPayload | undefined;
  let state: StatePayload | undefined;
  try {
    if (topic.type === 'STATE') state = decodeState(msg.payload);
    else payload = decodePayload(msg.payload);
  } catch (err) {
    return { kind: 'dead_letter', reason: 'decode_failed', detail: `not a Sparkplug B ${topic.type} payload: ${(err as Error).message}` };
  }

  let births: (BirthMetric | undefined)[];
  if (host) {
    const r = host.observe({ spoolSeq: msg.seq, messageId: msg.messageId, topic, payload }, how.counting === true, how.mayWait !== false);
    if (r.kind === 'wait') return r;
    if (r.kind === 'stale_death') return r;
    births = r.births;
  } else births = topic.type === 'NBIRTH' || topic.type === 'DBIRTH' ? ownNames(payload) : (payload?.metrics ?? []).map(() => undefined);

  const targets: RouteTargets = { route: route.name };
  try {
    let json: string | undefined;
    const decodedJson = () => (json ??= stringifyJson(sparkplugJson(topic, payload ?? state, births)));
    if (route.pubsub) {
      const attributes = sparkplugAttributes(topic);
      for (const name of route.pubsub.attributes) attributes[name] = variables[name]!;
      const key = orderingKey(route.pubsub.orderingKey, variables);
      if ('problem' in key) return { kind: 'dead_letter', reason: 'field_invalid', detail: key.problem };
      const data = route.pubsub.data === 'fields' ? Buffer.from(decodedJson()) : msg.payload;
      targets.pubsub = { topic: route.pubsub.topic, data, attributes, ...(key.key ? { orderingKey: key.key } : {}) };
    }
    if (route.bigquery) {
      targets.bigquery = { table: route.bigquery.table, rows: sparkplugRows(msg, topic, payload, state, births) };
    }
    if (route.file) targets.file = { fieldsJson: decodedJson() };
  } catch (err) {
    // A value its datatype cannot hold (a truncated array, a value in the wrong field): the message as a whole.
    return { kind: 'dead_letter', reason: 'decode_failed', detail: (err as Error).message };
  }
  return { kind: 'routed', targets, rows: targets.bigquery?.rows.length ?? 0 };
}
