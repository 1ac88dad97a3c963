/**
 * What the routes make of one message, as plain data: the route that matched (the first whose topic does) and
 * the Pub/Sub message, BigQuery row and file decision it gives, or a drop, or the dead letter and why. Nothing
 * here sends anything, so `routes test` shows exactly what delivery will do.
 */
import { isUtf8 } from 'node:buffer';
import { rfc3339 } from '../core/message.js';
import { attributeText, bigqueryCell, jsonValue, type Typed } from './convert.js';
import { readFields } from './fields.js';
import { parseJson, stringifyJson, type JsonValue } from '../core/json.js';
import { matchTopic, orderingKey } from './template.js';
import { MAX_ATTRIBUTE_VALUE_BYTES } from '../sinks/pubsub/outgoing.js';
import type { RoutableMessage, Route, RouteDeadLetterReason, RoutesTable } from './types.js';
import type { BigQueryRow, BigQueryTarget, PubsubTarget, RouteTargets } from '../sinks/sink.js';
import type { SparkplugHost } from '../sparkplug/types.js';
import { routeSparkplug } from './sparkplug-route.js';


/** The route's Pub/Sub message; its attributes are added to the contract attributes the sink sets on every message. */
export type PubsubPlan = PubsubTarget;

export interface BigQueryPlan {
  dataset: string;
  table: string;
  /** One typed row (insertId the message_id), or one per Sparkplug metric (insertId the message_id and index). */
  rows: BigQueryTarget['rows'];
}

export type RouteOutcome =
  | {
      kind: 'routed';
      route: Route;
      variables: Record<string, string>;
      fields: Record<string, Typed | null>;
      /** Unset: the route does not use that sink, which is then done with the message. */
      pubsub?: PubsubPlan;
      bigquery?: BigQueryPlan;
      file: boolean;
      /** The same, as the sinks take it (set on the message by its sink runner). */
      targets: RouteTargets;
    }
  /** `route` unset: matched nothing, and the file says `unmatched: drop`. */
  | { kind: 'dropped'; route?: Route }
  | { kind: 'dead_letter'; route?: Route; reason: RouteDeadLetterReason; detail: string }
  /** Matched nothing, and the file says `unmatched: raw`: today's topic and raw table. */
  | { kind: 'raw' }
  /** A Sparkplug message whose aliases wait for a birth the node asked for (SPARKPLUG_REBIRTH): route it again later. */
  | { kind: 'wait'; route: Route; untilMs: number };

export class Router {
  /** `sparkplug`: the node's Sparkplug host, which resolves aliases with the births it keeps (unset: offline). */
  constructor(
    readonly table: RoutesTable,
    private readonly sparkplug?: SparkplugHost,
  ) {}

  /** The first route whose topic matches, with what it captured. */
  match(topic: string): { route: Route; variables: Record<string, string> } | undefined {
    for (const route of this.table.routes) {
      const variables = matchTopic(route.topic, topic);
      if (variables) return { route, variables };
    }
    return undefined;
  }

  /**
   * `counting`: this caller is the one that counts (the first sink's runner; Sparkplug seq gaps and rebirths);
   * `mayWait`: a Sparkplug message may be held for a birth (the caller has room to hold it).
   */
  route(msg: RoutableMessage, how: { counting?: boolean; mayWait?: boolean } = {}): RouteOutcome {
    const found = this.match(msg.topic);
    if (!found) {
      if (this.table.unmatched === 'raw') return { kind: 'raw' };
      if (this.table.unmatched === 'drop') return { kind: 'dropped' };
      return { kind: 'dead_letter', reason: 'no_route', detail: `topic ${JSON.stringify(msg.topic)} matches no route of ${this.table.file}` };
    }
    const { route, variables } = found;
    if (route.drop) return { kind: 'dropped', route };
    if (route.decode === 'sparkplug') {
      const out = routeSparkplug(route, msg, variables, this.sparkplug, how);
      switch (out.kind) {
        case 'wait':
          return { kind: 'wait', route, untilMs: out.untilMs };
        case 'stale_death':
          return { kind: 'dropped', route };
        case 'dead_letter':
          return { kind: 'dead_letter', route, reason: out.reason, detail: out.detail };
        case 'routed': {
          const { pubsub, bigquery } = out.targets;
          const plan = bigquery && route.bigquery ? { dataset: route.bigquery.dataset, table: bigquery.table, rows: bigquery.rows } : undefined;
          return { kind: 'routed', route, variables, fields: {}, pubsub, bigquery: plan, file: route.file, targets: out.targets };
        }
      }
    }

    let payload: JsonValue | undefined;
    if (route.decode === 'json') {
      const decoded = decodeJson(msg.payload);
      if (!decoded.ok) return { kind: 'dead_letter', route, reason: 'decode_failed', detail: decoded.detail };
      payload = decoded.value;
    }
    const read = readFields(route.fields, { payload, variables, properties: msg.properties });
    if (!read.ok) return { kind: 'dead_letter', route, reason: 'field_invalid', detail: read.detail };
    const fields = read.values;

    // The JSON of variables and fields, made once for Pub/Sub `data: fields` and the NDJSON line alike.
    let text: string | undefined;
    const json = () => (text ??= fieldsJson(variables, fields));
    let pubsub: PubsubPlan | undefined;
    if (route.pubsub) {
      const attributes: Record<string, string> = {};
      for (const name of route.pubsub.attributes) {
        const value = Object.hasOwn(variables, name) ? variables[name]! : fields[name] ? attributeText(fields[name]!) : undefined;
        if (value === undefined) continue; // an optional field that is absent adds no attribute
        if (Buffer.byteLength(value) > MAX_ATTRIBUTE_VALUE_BYTES) {
          return { kind: 'dead_letter', route, reason: 'field_invalid', detail: `attribute ${name}: the value is ${Buffer.byteLength(value)} bytes; Pub/Sub takes at most ${MAX_ATTRIBUTE_VALUE_BYTES}` };
        }
        attributes[name] = value;
      }
      const key = orderingKey(route.pubsub.orderingKey, variables);
      if ('problem' in key) return { kind: 'dead_letter', route, reason: 'field_invalid', detail: key.problem };
      const data = route.pubsub.data === 'payload' ? msg.payload : Buffer.from(json());
      pubsub = { topic: route.pubsub.topic, data, attributes, ...(key.key ? { orderingKey: key.key } : {}) };
    }

    let bigquery: BigQueryPlan | undefined;
    if (route.bigquery) {
      const row: BigQueryRow = { message_id: msg.messageId, topic: msg.topic, received_at: rfc3339(msg.receivedAt) };
      for (const v of route.topic.variables) row[v] = variables[v]!;
      for (const f of route.fields) row[f.name] = fields[f.name] ? bigqueryCell(fields[f.name]!) : null;
      bigquery = { dataset: route.bigquery.dataset, table: route.bigquery.table, rows: [{ insertId: msg.messageId, row }] };
    }
    const targets: RouteTargets = { route: route.name };
    if (pubsub) targets.pubsub = pubsub;
    if (bigquery) targets.bigquery = { table: bigquery.table, rows: bigquery.rows };
    if (route.file) targets.file = { fieldsJson: json() };
    return { kind: 'routed', route, variables, fields, pubsub, bigquery, file: route.file, targets };
  }
}

function decodeJson(payload: Buffer): { ok: true; value: JsonValue } | { ok: false; detail: string } {
  // Bytes that are not UTF-8 are refused rather than replaced, and a leading byte-order mark is dropped, as a
  // fatal TextDecoder would do, at a fraction of its cost on short payloads: toString replaces what is not
  // UTF-8 with U+FFFD, so only a text holding U+FFFD needs the full check.
  let text = payload.toString('utf8');
  if (text.includes('\uFFFD') && !isUtf8(payload)) return { ok: false, detail: 'payload is not valid UTF-8, so not JSON (decode: json)' };
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return { ok: true, value: parseJson(text) };
  } catch (err) {
    const why = (err as Error).message;
    return { ok: false, detail: `payload is not JSON (decode: json): ${why.length > 160 ? `${why.slice(0, 157)}…` : why}` };
  }
}

/** `data: fields`: one JSON object of the topic variables, then the fields (NULL for an absent optional one). */
function fieldsJson(variables: Record<string, string>, fields: Record<string, Typed | null>): string {
  const out: Record<string, JsonValue> = { ...variables };
  for (const [name, t] of Object.entries(fields)) out[name] = t ? jsonValue(t) : null;
  return stringifyJson(out);
}
