/**
 * What a routes file describes once it is read and checked: the routes in order, each with its topic template,
 * its typed fields and where its messages go. Everything here is plain data, built once at load.
 */
import type { SpooledMessage } from '../core/message.js';
import type { TopicTemplate, KeyTemplate } from './template.js';

export type { MessageProperties } from '../core/message.js';

/** A spooled message as routing reads it (its MQTT 5 properties included). */
export type RoutableMessage = SpooledMessage;

export const FIELD_TYPES = ['string', 'int', 'float', 'bool', 'timestamp', 'json'] as const;
export type FieldType = (typeof FIELD_TYPES)[number];

export const DECODINGS = ['raw', 'json', 'sparkplug'] as const;
export type Decoding = (typeof DECODINGS)[number];

export const UNMATCHED = ['raw', 'dead_letter', 'drop'] as const;
/** The `route` label the metrics give what matches no route; no route may take the name. */
export const UNMATCHED_ROUTE = 'unmatched';
export type Unmatched = (typeof UNMATCHED)[number];

/** One step of a payload path: a member name or an array index. */
export type PathStep = string | number;

/** Where a field's value is read: a payload path, a topic variable, or an MQTT 5 user property. */
export type FieldSource =
  | { kind: 'payload'; path: readonly PathStep[]; text: string }
  | { kind: 'topic'; variable: string; text: string }
  | { kind: 'property'; name: string; text: string };

export interface FieldSpec {
  name: string;
  from: FieldSource;
  type: FieldType;
  optional: boolean;
}

export interface PubsubRoute {
  /** `projects/P/topics/T` */
  topic: string;
  /** Topic variables or fields added to the contract attributes, under their own names. */
  attributes: readonly string[];
  orderingKey?: KeyTemplate;
  /** `payload`: the bytes unchanged; `fields`: a JSON object of the topic variables and fields. */
  data: 'payload' | 'fields';
}

export interface BigQueryRoute {
  dataset: string;
  table: string;
}

export interface Route {
  name: string;
  /** Position in the file, from 0. */
  index: number;
  topic: TopicTemplate;
  /** sparkplug: Sparkplug B (docs/sparkplug.md): no fields; its table has one row per metric. */
  decode: Decoding;
  fields: readonly FieldSpec[];
  /** Unset: the route's messages skip that sink. */
  pubsub?: PubsubRoute;
  bigquery?: BigQueryRoute;
  file: boolean;
  drop: boolean;
}

export interface RoutesTable {
  /** The file the routes were read from, as configured. */
  file: string;
  routes: readonly Route[];
  unmatched: Unmatched;
}

/** Dead-letter reasons routing gives (metric labels, with the spool's own). */
export type RouteDeadLetterReason = 'no_route' | 'field_invalid' | 'decode_failed';
