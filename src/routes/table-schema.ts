/**
 * A route's typed BigQuery table: `message_id`, `topic`, `received_at`, one STRING column per topic variable and
 * one column per field with its type; day partitions on received_at, clustered by up to four topic variables.
 * And how an existing table compares with it: BigQuery lets a NULLABLE column be added to a table, so a new
 * optional field is added at start; any other difference stops the start, listed.
 */
import type { TableFieldSchema } from '../sinks/bigquery/schema.js';
import type { FieldType, Route } from './types.js';
import { SPARKPLUG_TABLE_FIELDS, sparkplugTableResource } from '../sparkplug/rows.js';

/** BigQuery's legacy names, which its API reports (INT64 → INTEGER, FLOAT64 → FLOAT, BOOL → BOOLEAN). */
const COLUMN_TYPES: Record<FieldType, string> = {
  string: 'STRING',
  int: 'INTEGER',
  float: 'FLOAT',
  bool: 'BOOLEAN',
  timestamp: 'TIMESTAMP',
  json: 'JSON',
};
const TYPE_ALIASES: Record<string, string> = { INT64: 'INTEGER', FLOAT64: 'FLOAT', BOOL: 'BOOLEAN' };
const MAX_CLUSTERING_COLUMNS = 4;

export interface TypedTableResource {
  schema: { fields: TableFieldSchema[] };
  timePartitioning: { type: 'DAY'; field: 'received_at' };
  clustering?: { fields: string[] };
  description: string;
}

/** The columns of a route's table, in row order (a Sparkplug route's are fixed: one row per metric). */
export function typedTableFields(route: Route): TableFieldSchema[] {
  if (route.decode === 'sparkplug') return SPARKPLUG_TABLE_FIELDS.map((f) => ({ ...f }));
  return [
    { name: 'message_id', type: 'STRING', mode: 'REQUIRED', description: 'The message id given at commit to the spool; also the insertId.' },
    { name: 'topic', type: 'STRING', mode: 'REQUIRED', description: 'MQTT topic the message was published to.' },
    { name: 'received_at', type: 'TIMESTAMP', mode: 'REQUIRED', description: 'When the node read the message from the broker (UTC).' },
    ...route.topic.variables.map((v): TableFieldSchema => ({ name: v, type: 'STRING', mode: 'REQUIRED', description: `Topic level {${v}} of ${route.topic.text}.` })),
    ...route.fields.map((f): TableFieldSchema => ({
      name: f.name,
      type: COLUMN_TYPES[f.type],
      mode: f.optional ? 'NULLABLE' : 'REQUIRED',
      description: `${f.from.text} as ${f.type}${f.optional ? ', NULL when absent' : ''}.`,
    })),
  ];
}

/** The body of `tables.insert` for a route's table, without `tableReference` (the caller names the table). */
export function typedTableResource(route: Route): TypedTableResource {
  if (route.decode === 'sparkplug') return sparkplugTableResource(route.name);
  const clustering = route.topic.variables.slice(0, MAX_CLUSTERING_COLUMNS);
  return {
    schema: { fields: typedTableFields(route) },
    timePartitioning: { type: 'DAY', field: 'received_at' },
    ...(clustering.length ? { clustering: { fields: clustering } } : {}),
    description: `Messages of route ${route.name} (${route.topic.text}), typed by mqtt-ingest (see docs/routing.md).`,
  };
}

export interface TableComparison {
  /** Columns to add (all NULLABLE: new optional fields) before rows are written. */
  add: TableFieldSchema[];
  /** Why rows of the route cannot be written to the table as it is; the start stops listing them. */
  differences: string[];
  /** Partitioning or clustering that differs: slower or dearer queries, not failed writes. */
  warnings: string[];
}

const normal = (type: string | undefined) => TYPE_ALIASES[(type ?? '').toUpperCase()] ?? (type ?? '').toUpperCase();
const modeOf = (f: { mode?: string | null }) => (f.mode ?? 'NULLABLE').toUpperCase();

/**
 * Compares an existing table with a route's. Fits: every column of the route is there with its type, and is
 * not REQUIRED where the route may leave it NULL nor REPEATED; a NULLABLE column the route does not fill (a field
 * since removed) stays. A missing NULLABLE column is added; a missing REQUIRED one is a difference, since
 * BigQuery adds only NULLABLE columns to a table that has rows.
 */
export function compareTypedTable(
  route: Route,
  table: {
    schema?: { fields?: readonly Partial<TableFieldSchema>[] | null } | null;
    timePartitioning?: { type?: string | null; field?: string | null } | null;
    clustering?: { fields?: readonly string[] | null } | null;
  },
): TableComparison {
  const out: TableComparison = { add: [], differences: [], warnings: [] };
  const existing = new Map<string, Partial<TableFieldSchema>>();
  for (const f of table.schema?.fields ?? []) if (f.name) existing.set(f.name.toLowerCase(), f); // names ignore case
  for (const want of typedTableFields(route)) {
    const have = existing.get(want.name.toLowerCase());
    existing.delete(want.name.toLowerCase());
    if (!have) {
      if (want.mode === 'NULLABLE') out.add.push(want);
      else out.differences.push(`column ${want.name} is missing (want ${want.type} REQUIRED; BigQuery adds only NULLABLE columns: make the field optional, or use a new table)`);
      continue;
    }
    if (normal(have.type) !== normal(want.type)) out.differences.push(`column ${want.name} is ${have.type ?? 'untyped'}, want ${want.type}`);
    const mode = modeOf(have);
    if (mode === 'REPEATED') out.differences.push(`column ${want.name} is REPEATED, want ${want.mode}`);
    else if (mode === 'REQUIRED' && want.mode === 'NULLABLE') out.differences.push(`column ${want.name} is REQUIRED, want NULLABLE (the field is optional)`);
  }
  for (const extra of existing.values()) {
    if (modeOf(extra) === 'REQUIRED') out.differences.push(`column ${extra.name} is REQUIRED but the route's rows have no such column`);
  }
  const want = typedTableResource(route);
  const p = table.timePartitioning;
  if (!p || (p.type ?? '').toUpperCase() !== 'DAY' || p.field !== 'received_at') {
    out.warnings.push(`the table is ${p ? `partitioned by ${p.type ?? '?'} on ${p.field ?? '_PARTITIONTIME'}` : 'not partitioned'}; a route's table is partitioned by DAY on received_at`);
  }
  const haveClustering = (table.clustering?.fields ?? []).join(', ');
  const wantClustering = (want.clustering?.fields ?? []).join(', ');
  if (haveClustering !== wantClustering) {
    out.warnings.push(`the table is ${haveClustering ? `clustered by ${haveClustering}` : 'not clustered'}; the route's table is ${wantClustering ? `clustered by ${wantClustering}` : 'not clustered'}`);
  }
  return out;
}
