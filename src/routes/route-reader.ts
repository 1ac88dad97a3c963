/**
 * One route of the routes file read from its YAML node, every mistake in it reported (with its line) rather
 * than the first. What a route may name depends on the sinks that are on, which the context gives.
 */
import type { Node } from 'yaml';
import { bigquerySection } from '../sinks/bigquery/config.js';
import { pubsubSection, pubsubTopic } from '../sinks/pubsub/config.js';
import { CONTRACT_ATTRIBUTE_NAMES, MAX_ORDERING_KEY_BYTES } from '../sinks/pubsub/outgoing.js';
import { CONTENT_TYPE_ATTRIBUTE, USER_PROPERTY_PREFIX } from '../sinks/pubsub/property-attributes.js';
import { parseFrom } from './fields.js';
import { columnNameProblem, parseKeyTemplate, parseTopicTemplate, type TopicTemplate } from './template.js';
import { DECODINGS, FIELD_TYPES, UNMATCHED_ROUTE, type Decoding, type BigQueryRoute, type FieldSpec, type FieldType, type PubsubRoute, type Route } from './types.js';
import type { NodeReader } from './yaml-nodes.js';

/** The sinks a route may send to. `null`: that sink is off; `undefined`: not known (its key has a problem). */
export interface RoutesContext {
  /** PUBSUB_TOPIC, the default topic of a route. */
  pubsubTopic: string | null | undefined;
  gcpProjectId: string | null | undefined;
  bigqueryDataset: string | null | undefined;
  /** BIGQUERY_TABLE, the raw table (no route may write typed rows to it while unmatched messages go raw). */
  bigqueryRawTable?: string;
  fileSink: boolean | undefined;
}

export const ROUTE_NAME = /^[a-z][a-z0-9_]*$/;

const ROUTE_KEYS = ['name', 'topic', 'decode', 'fields', 'pubsub', 'bigquery', 'file', 'drop'] as const;
const SINK_KEYS = ['decode', 'fields', 'pubsub', 'bigquery', 'file'] as const;
/** Columns every typed row has, which no variable or field may take. */
export const FIXED_COLUMNS = ['message_id', 'topic', 'received_at'];
/** Attributes the Pub/Sub sink sets on every message; a route adds its own beside them. */
const CONTRACT_ATTRIBUTES = [...CONTRACT_ATTRIBUTE_NAMES, CONTENT_TYPE_ATTRIBUTE];

const list = (values: readonly string[]) => `${values.slice(0, -1).join(', ')} or ${values.at(-1)}`;

/** What one route entry gave: the route when it has no problem, and its topic when that alone is sound. */
export interface RouteReading {
  route?: Route;
  topic?: TopicTemplate;
}

export function readRoute(r: NodeReader, node: Node, index: number, ctx: RoutesContext): RouteReading {
  const entries = r.entries(node);
  if (!entries) {
    r.problems.push({ line: r.line(node), route: `routes[${index}]`, message: `must be a mapping with name and topic, got ${r.kind(node)}` });
    return {};
  }
  const get = (key: string) => entries.find((e) => e.key === key);
  const rawName = r.text(get('name')?.value);
  const label = rawName !== undefined && ROUTE_NAME.test(rawName) ? `route ${JSON.stringify(rawName)}` : `routes[${index}]`;
  let ok = true;
  const problem = (at: unknown, key: string, message: string) => {
    ok = false;
    r.problems.push({ line: r.line(at) ?? r.line(node), route: label, key, message });
  };

  for (const e of entries) {
    if (!(ROUTE_KEYS as readonly string[]).includes(e.key)) problem(e.keyNode, e.key, `is not a route key (${list(ROUTE_KEYS)})`);
  }

  const nameEntry = get('name');
  if (!nameEntry) problem(node, 'name', 'is missing');
  else if (rawName === undefined || !ROUTE_NAME.test(rawName)) {
    problem(nameEntry.value, 'name', `must be lower-case letters, digits and "_", starting with a letter, got ${r.kind(nameEntry.value)}`);
  } else if (rawName === UNMATCHED_ROUTE) {
    problem(nameEntry.value, 'name', `"${UNMATCHED_ROUTE}" is the route label of messages no route matches (metrics); choose another name`);
  }

  let topic: TopicTemplate | undefined;
  const topicEntry = get('topic');
  const topicText = r.text(topicEntry?.value);
  if (!topicEntry) problem(node, 'topic', 'is missing');
  else if (topicText === undefined) problem(topicEntry.value, 'topic', `must be a topic template such as plant/{site}/pressure, got ${r.kind(topicEntry.value)}`);
  else {
    const parsed = parseTopicTemplate(topicText);
    if ('problem' in parsed) problem(topicEntry.value, 'topic', `${JSON.stringify(topicText)} ${parsed.problem}`);
    else topic = parsed.template;
  }
  const variables = topic?.variables ?? [];
  for (const v of variables) {
    if (FIXED_COLUMNS.includes(v.toLowerCase())) problem(topicEntry?.value, 'topic', `the variable {${v}} would take the column ${v} every row has; rename it`);
  }

  const dropEntry = get('drop');
  const drop = dropEntry ? r.scalar(dropEntry.value) : false;
  if (typeof drop !== 'boolean') problem(dropEntry?.value, 'drop', `must be true or false, got ${r.kind(dropEntry?.value)}`);
  if (drop === true) {
    for (const key of SINK_KEYS) {
      const e = get(key);
      if (e) problem(e.keyNode, key, 'is set on a route with drop: true, which sends nothing; remove one or the other');
    }
    if (!ok || !topic) return { topic };
    return { topic, route: { name: rawName!, index, topic, decode: 'raw', fields: [], file: false, drop: true } };
  }

  const decodeEntry = get('decode');
  const decode = decodeEntry ? r.scalar(decodeEntry.value) : 'raw';
  if (typeof decode !== 'string' || !(DECODINGS as readonly string[]).includes(decode)) {
    problem(decodeEntry?.value, 'decode', `must be ${list(DECODINGS)}, got ${r.kind(decodeEntry?.value)}`);
  }
  const sparkplug = decode === 'sparkplug';
  const fieldsEntry = get('fields');
  if (sparkplug && fieldsEntry) {
    problem(fieldsEntry.keyNode, 'fields', 'is set on a Sparkplug route, whose table has one row per metric with fixed columns (docs/sparkplug.md); remove it');
  }
  const fields = sparkplug ? [] : readFields(r, fieldsEntry, variables, decode === 'json', problem);
  const names = [...variables, ...fields.map((f) => f.name)];
  const pubsub = readPubsub(r, get('pubsub'), variables, names, ctx, problem);
  const bigquery = readBigQuery(r, get('bigquery'), rawName ?? '', ctx, problem);

  const fileEntry = get('file');
  const fileValue = fileEntry ? r.scalar(fileEntry.value) : undefined;
  let file = ctx.fileSink === true;
  if (fileEntry && typeof fileValue !== 'boolean') problem(fileEntry.value, 'file', `must be true or false, got ${r.kind(fileEntry.value)}`);
  else if (fileValue === true && ctx.fileSink === false) {
    problem(fileEntry!.value, 'file', 'is true but the file sink is off (FILE_SINK, or FILE_SINK=auto with a cloud sink configured)');
  } else if (typeof fileValue === 'boolean') file = fileValue;

  const known = ctx.pubsubTopic !== undefined && ctx.bigqueryDataset !== undefined && ctx.fileSink !== undefined;
  if (ok && known && !pubsub && !bigquery && !file) {
    problem(node, 'drop', 'the route sends to no sink (Pub/Sub, BigQuery and the file sink are all off for it); write drop: true if that is meant');
  }
  if (!ok || !topic) return { topic };
  return { topic, route: { name: rawName!, index, topic, decode: decode as Decoding, fields, pubsub, bigquery, file, drop: false } };
}

type ProblemAt = (at: unknown, key: string, message: string) => void;
type Entry = { key: string; keyNode: unknown; value: Node | null } | undefined;

function readFields(r: NodeReader, entry: Entry, variables: readonly string[], json: boolean, problem: ProblemAt): FieldSpec[] {
  if (!entry) return [];
  const fieldEntries = r.entries(entry.value);
  if (!fieldEntries) {
    problem(entry.value, 'fields', `must be a mapping of field names to { from, type }, got ${r.kind(entry.value)}`);
    return [];
  }
  const out: FieldSpec[] = [];
  const taken = new Map(variables.map((v) => [v.toLowerCase(), `the topic variable {${v}}`]));
  for (const f of fieldEntries) {
    const at = `fields.${f.key}`;
    let valid = true;
    const fail = (node: unknown, key: string, message: string) => {
      valid = false;
      problem(node, key, message);
    };
    const nameProblem = columnNameProblem(f.key);
    if (nameProblem) fail(f.keyNode, at, nameProblem);
    const lower = f.key.toLowerCase();
    if (FIXED_COLUMNS.includes(lower)) fail(f.keyNode, at, `would take the column ${lower} every row has; rename the field`);
    else if (taken.has(lower)) fail(f.keyNode, at, `has the name of ${taken.get(lower)} (column names ignore case); rename one`);
    taken.set(lower, `the field ${f.key}`);
    const spec = r.entries(f.value);
    if (!spec) {
      fail(f.value, at, `must be a mapping { from, type, optional }, got ${r.kind(f.value)}`);
      continue;
    }
    for (const s of spec) if (!['from', 'type', 'optional'].includes(s.key)) fail(s.keyNode, `${at}.${s.key}`, 'is not a field key (from, type or optional)');
    const fromEntry = spec.find((s) => s.key === 'from');
    const fromText = r.text(fromEntry?.value);
    let from: FieldSpec['from'] | undefined;
    if (!fromEntry) fail(f.value, `${at}.from`, 'is missing');
    else if (fromText === undefined) fail(fromEntry.value, `${at}.from`, `must be payload.<path>, topic.<variable> or property.<name>, got ${r.kind(fromEntry.value)}`);
    else {
      const parsed = parseFrom(fromText);
      if ('problem' in parsed) fail(fromEntry.value, `${at}.from`, `${JSON.stringify(fromText)} ${parsed.problem}`);
      else if (parsed.source.kind === 'topic' && !variables.includes(parsed.source.variable)) {
        fail(fromEntry.value, `${at}.from`, `${JSON.stringify(fromText)}: the topic captures no {${parsed.source.variable}}${capturedList(variables)}`);
      } else if (parsed.source.kind === 'payload' && !json) {
        fail(fromEntry.value, `${at}.from`, `${JSON.stringify(fromText)} reads the payload as JSON, which needs decode: json on the route`);
      } else from = parsed.source;
    }
    const typeEntry = spec.find((s) => s.key === 'type');
    const type = r.scalar(typeEntry?.value);
    if (!typeEntry) fail(f.value, `${at}.type`, `is missing (${list(FIELD_TYPES)})`);
    else if (typeof type !== 'string' || !(FIELD_TYPES as readonly string[]).includes(type)) {
      fail(typeEntry.value, `${at}.type`, `${r.kind(typeEntry.value)} is not a field type; use ${list(FIELD_TYPES)}`);
    }
    const optionalEntry = spec.find((s) => s.key === 'optional');
    const optional = optionalEntry ? r.scalar(optionalEntry.value) : false;
    if (typeof optional !== 'boolean') fail(optionalEntry?.value, `${at}.optional`, `must be true or false, got ${r.kind(optionalEntry?.value)}`);
    if (valid && from) out.push({ name: f.key, from, type: type as FieldType, optional: optional as boolean });
  }
  return out;
}

function capturedList(variables: readonly string[]): string {
  return variables.length ? ` (it captures ${variables.map((v) => `{${v}}`).join(', ')})` : ' (it captures no variables)';
}

function readPubsub(
  r: NodeReader, entry: Entry, variables: readonly string[], names: readonly string[], ctx: RoutesContext, problem: ProblemAt,
): PubsubRoute | undefined {
  const value = entry ? r.scalar(entry.value) : undefined;
  if (value === false) return undefined;
  const settings = entry && value !== true ? r.entries(entry.value) : [];
  if (!settings) {
    problem(entry?.value, 'pubsub', `must be false, true or a mapping { topic, attributes, ordering_key, data }, got ${r.kind(entry?.value)}`);
    return undefined;
  }
  const get = (key: string) => settings.find((s) => s.key === key);
  for (const s of settings) {
    if (!['topic', 'attributes', 'ordering_key', 'data'].includes(s.key)) problem(s.keyNode, `pubsub.${s.key}`, 'is not a Pub/Sub key (topic, attributes, ordering_key or data)');
  }
  let topic: string | undefined;
  const topicEntry = get('topic');
  if (topicEntry) {
    const text = r.text(topicEntry.value);
    const parsed = pubsubSection.keys.PUBSUB_TOPIC.safeParse(text);
    if (text === undefined || !parsed.success) {
      problem(topicEntry.value, 'pubsub.topic', `${r.kind(topicEntry.value)} is not a topic Pub/Sub accepts: 3 to 255 letters, digits and - _ . ~ + %, starting with a letter and not with "goog", or projects/PROJECT/topics/TOPIC`);
    } else if (ctx.gcpProjectId !== undefined) {
      if (ctx.gcpProjectId === null && !text.startsWith('projects/')) {
        problem(topicEntry.value, 'pubsub.topic', `${JSON.stringify(text)} is a topic id without a project, and GCP_PROJECT_ID is unset; set it or give projects/PROJECT/topics/${text}`);
      } else topic = pubsubTopic({ PUBSUB_TOPIC: text, GCP_PROJECT_ID: ctx.gcpProjectId ?? undefined })!.path;
    }
    if (ctx.pubsubTopic === null) problem(topicEntry.keyNode, 'pubsub.topic', 'is set but the Pub/Sub sink is off (PUBSUB_TOPIC is unset); set PUBSUB_TOPIC, the topic of routes that name none');
  } else if (ctx.pubsubTopic === null) {
    if (entry) problem(entry.keyNode, 'pubsub', 'is on but the Pub/Sub sink is off (PUBSUB_TOPIC is unset)');
    return undefined;
  } else topic = ctx.pubsubTopic;

  const attributes: string[] = [];
  const attrEntry = get('attributes');
  if (attrEntry) {
    const items = r.items(attrEntry.value);
    if (!items) problem(attrEntry.value, 'pubsub.attributes', `must be a list of topic variables or fields, got ${r.kind(attrEntry.value)}`);
    for (const item of items ?? []) {
      const name = r.text(item);
      if (name === undefined || !names.includes(name)) {
        problem(item, 'pubsub.attributes', `${r.kind(item)} is neither a topic variable nor a field of the route${capturedList(variables)}`);
      } else if (CONTRACT_ATTRIBUTES.includes(name) || name.startsWith(USER_PROPERTY_PREFIX) || name.startsWith('goog')) {
        problem(item, 'pubsub.attributes', `${JSON.stringify(name)} is an attribute the node sets itself (or Pub/Sub reserves); rename the variable or field`);
      } else if (attributes.includes(name)) problem(item, 'pubsub.attributes', `names ${JSON.stringify(name)} twice`);
      else attributes.push(name);
    }
  }

  let orderingKey: PubsubRoute['orderingKey'];
  const keyEntry = get('ordering_key');
  if (keyEntry) {
    const text = r.text(keyEntry.value);
    const parsed = text === undefined ? undefined : parseKeyTemplate(text);
    if (!parsed) problem(keyEntry.value, 'pubsub.ordering_key', `must be a template such as "{site}/{sensor}", got ${r.kind(keyEntry.value)}`);
    else if ('problem' in parsed) problem(keyEntry.value, 'pubsub.ordering_key', `${JSON.stringify(text)} ${parsed.problem}`);
    else {
      const missing = parsed.template.parts.flatMap((p) => ('variable' in p && !variables.includes(p.variable) ? [p.variable] : []));
      for (const v of missing) problem(keyEntry.value, 'pubsub.ordering_key', `uses {${v}}, which the topic does not capture${capturedList(variables)}`);
      if (Buffer.byteLength(text!) > MAX_ORDERING_KEY_BYTES) problem(keyEntry.value, 'pubsub.ordering_key', `is longer than Pub/Sub's ${MAX_ORDERING_KEY_BYTES} bytes`);
      if (missing.length === 0) orderingKey = parsed.template;
    }
  }

  const dataEntry = get('data');
  const data = dataEntry ? r.scalar(dataEntry.value) : 'payload';
  if (data !== 'payload' && data !== 'fields') problem(dataEntry?.value, 'pubsub.data', `must be payload or fields, got ${r.kind(dataEntry?.value)}`);
  if (topic === undefined) return undefined;
  return { topic, attributes, orderingKey, data: data as 'payload' | 'fields' };
}

function readBigQuery(r: NodeReader, entry: Entry, routeName: string, ctx: RoutesContext, problem: ProblemAt): BigQueryRoute | undefined {
  const value = entry ? r.scalar(entry.value) : undefined;
  if (value === false) return undefined;
  const settings = entry && value !== true ? r.entries(entry.value) : [];
  if (!settings) {
    problem(entry?.value, 'bigquery', `must be false, true or a mapping { table }, got ${r.kind(entry?.value)}`);
    return undefined;
  }
  for (const s of settings) if (s.key !== 'table') problem(s.keyNode, `bigquery.${s.key}`, 'is not a BigQuery key (table)');
  const tableEntry = settings.find((s) => s.key === 'table');
  // Unnamed, a route's table is named after the route.
  const table = tableEntry ? r.text(tableEntry.value) : routeName;
  if (tableEntry && (table === undefined || !bigquerySection.keys.BIGQUERY_TABLE.safeParse(table).success)) {
    problem(tableEntry.value, 'bigquery.table', `${r.kind(tableEntry.value)} is not a table id BigQuery accepts: letters, marks, digits, "_", "-" and spaces, at most 1024 bytes`);
    return undefined;
  }
  if (ctx.bigqueryDataset === null) {
    if (entry) problem(entry.keyNode, 'bigquery', 'is on but the BigQuery sink is off (BIGQUERY_DATASET and BIGQUERY_TABLE are unset)');
    return undefined;
  }
  if (ctx.bigqueryDataset === undefined || table === undefined || table === '') return undefined;
  return { dataset: ctx.bigqueryDataset, table };
}
