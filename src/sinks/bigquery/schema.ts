/**
 * The raw BigQuery table of the contract (ARCHITECTURE §3, "BigQuery row"): the ONE place it is defined.
 *
 * Each column is written once below with its BigQuery type, mode, description and how its value is taken
 * from a spooled message. The REST schema (`RAW_TABLE_FIELDS`), the table resource for `tables.insert`, the
 * schema check at start (`schemaDifferences`), the row builder (`toRawRow`) and the schema table in
 * docs/bigquery.md are all derived from that list, so they cannot drift apart.
 */
import { encodePayload, rfc3339, type SpooledMessage } from '../../core/message.js';

/** A column as BigQuery's REST API describes it (TableFieldSchema). */
export interface TableFieldSchema {
  name: string;
  type: string;
  mode?: 'NULLABLE' | 'REQUIRED' | 'REPEATED';
  description?: string;
  fields?: TableFieldSchema[];
}

/** The cells of one raw row, as sent in `tabledata.insertAll` (`rows[].json`). */
export interface RawRow {
  message_id: string;
  topic: string;
  received_at: string;
  qos: number;
  retain: boolean;
  payload: string;
  payload_encoding: 'utf8' | 'base64';
  /** JSON text (see the `data` column below), or null when the payload is not JSON. */
  data: string | null;
  /** JSON text of the MQTT 5 user properties, or null without any. */
  user_properties: string | null;
  content_type: string | null;
}

/** One column: its REST schema and how its cell is taken from a message; `value` is typed by `name`. */
type Column = {
  [K in keyof RawRow]: TableFieldSchema & {
    name: K;
    mode: 'NULLABLE' | 'REQUIRED';
    description: string;
    value: (msg: SpooledMessage, encoded: ReturnType<typeof encodePayload>) => RawRow[K];
  };
}[keyof RawRow];

const RAW_COLUMNS: readonly Column[] = [
  {
    name: 'message_id',
    type: 'STRING',
    mode: 'REQUIRED',
    description: 'Stable, time-sortable id (a ULID) given to the message when it was committed to the spool; also the insertId of the streaming insert.',
    value: (m) => m.messageId,
  },
  {
    name: 'topic',
    type: 'STRING',
    mode: 'REQUIRED',
    description: 'MQTT topic the message was published to.',
    value: (m) => m.topic,
  },
  {
    name: 'received_at',
    type: 'TIMESTAMP',
    mode: 'REQUIRED',
    description: 'When the node read the message from the broker (UTC, millisecond precision). The table is partitioned by day on this column.',
    value: (m) => rfc3339(m.receivedAt),
  },
  {
    name: 'qos',
    type: 'INTEGER',
    mode: 'NULLABLE',
    description: 'MQTT quality of service the message was received with: 0, 1 or 2.',
    value: (m) => m.qos,
  },
  {
    name: 'retain',
    type: 'BOOLEAN',
    mode: 'NULLABLE',
    description: 'MQTT retain flag of the message.',
    value: (m) => m.retain,
  },
  {
    name: 'payload',
    type: 'STRING',
    mode: 'NULLABLE',
    description: 'The payload: the text itself when it is valid UTF-8, else its bytes in base64 (see payload_encoding).',
    value: (_m, e) => e.payload,
  },
  {
    name: 'payload_encoding',
    type: 'STRING',
    mode: 'NULLABLE',
    description: '`utf8` when payload holds the text as it was sent, `base64` when it holds the bytes in base64.',
    value: (_m, e) => e.payload_encoding,
  },
  {
    name: 'data',
    type: 'JSON',
    mode: 'NULLABLE',
    description: 'The payload parsed as JSON when it is a JSON document (object, array or scalar), else NULL.',
    value: (_m, e) => jsonText(e),
  },
  {
    name: 'user_properties',
    type: 'JSON',
    mode: 'NULLABLE',
    description:
      'The MQTT 5 user properties of the PUBLISH as a JSON object, name to value; a name sent more than once maps to the array of its values, in order. NULL when it had none (and for MQTT 3.1.1).',
    value: (m) => (m.properties?.userProperties === undefined ? null : JSON.stringify(m.properties.userProperties)),
  },
  {
    name: 'content_type',
    type: 'STRING',
    mode: 'NULLABLE',
    description: 'The MQTT 5 content type of the PUBLISH, as the publisher sent it; NULL when it had none.',
    value: (m) => m.properties?.contentType ?? null,
  },
];

/** The raw table's columns, in order, as BigQuery's REST API takes them (TableFieldSchema[]). */
export const RAW_TABLE_FIELDS: readonly TableFieldSchema[] = Object.freeze(
  RAW_COLUMNS.map(({ name, type, mode, description }) => Object.freeze({ name, type, mode, description })),
);

/** Day partitions on received_at: queries that filter on a time range read only those days. */
export const RAW_TABLE_PARTITIONING = Object.freeze({ type: 'DAY', field: 'received_at' } as const);

/** Clustered by topic: filters on a topic (or topic prefix) read less within each partition. */
export const RAW_TABLE_CLUSTERING = Object.freeze({ fields: Object.freeze(['topic']) });

/** The body of `tables.insert` for the raw table, without `tableReference` (the caller names the table). */
export function rawTableResource(): {
  schema: { fields: TableFieldSchema[] };
  timePartitioning: { type: string; field: string };
  clustering: { fields: string[] };
  description: string;
} {
  return {
    schema: { fields: RAW_TABLE_FIELDS.map((f) => ({ ...f })) },
    timePartitioning: { ...RAW_TABLE_PARTITIONING },
    clustering: { fields: [...RAW_TABLE_CLUSTERING.fields] },
    description: 'MQTT messages as received by mqtt-ingest (raw table; see docs/bigquery.md).',
  };
}

/** The raw row for one spooled message, built from the column list above. */
export function toRawRow(msg: SpooledMessage): RawRow {
  const encoded = encodePayload(msg.payload);
  const row = {} as Record<keyof RawRow, unknown>;
  for (const column of RAW_COLUMNS) row[column.name] = column.value(msg, encoded);
  return row as unknown as RawRow;
}

/**
 * The payload as JSON text for the JSON column, or null when it is not JSON.
 * `tabledata.insertAll` takes a JSON column's value as JSON *text* (Google's Python client serialises JSON
 * cells with json.dumps before insertAll: google-cloud-bigquery `_helpers._json_to_json`). The payload text is
 * sent as it is, after checking that it parses, rather than re-serialised: JSON.parse would round numbers
 * beyond 2^53 that BigQuery itself can keep.
 */
function jsonText(encoded: ReturnType<typeof encodePayload>): string | null {
  if (encoded.payload_encoding !== 'utf8') return null;
  const text = encoded.payload;
  if (text.trim() === '') return null;
  try {
    JSON.parse(text);
    return text;
  } catch {
    return null;
  }
}

// ---- comparing an existing table with the raw table

/** BigQuery accepts Standard SQL type names in schemas but reports the legacy ones; compare them as one. */
const TYPE_ALIASES: Record<string, string> = {
  INT64: 'INTEGER',
  FLOAT64: 'FLOAT',
  BOOL: 'BOOLEAN',
  STRUCT: 'RECORD',
  BIGNUMERIC: 'BIGNUMERIC',
};

function normalType(type: string | undefined): string {
  const t = (type ?? '').toUpperCase();
  return TYPE_ALIASES[t] ?? t;
}

function modeOf(field: { mode?: string | null }): string {
  return (field.mode ?? 'NULLABLE').toUpperCase();
}

/**
 * Why raw rows could not be written to a table with these columns; empty when they can. Compatible means:
 * every raw column exists with the same type; a column the raw row may leave NULL is not REQUIRED there;
 * nothing is REPEATED that the row gives once; and any extra column of the table is not REQUIRED (rows
 * never fill it). Extra NULLABLE columns are fine: routing may add columns of its own.
 */
export function schemaDifferences(existingFields: readonly Partial<TableFieldSchema>[] | undefined | null): string[] {
  const problems: string[] = [];
  const existing = new Map<string, Partial<TableFieldSchema>>();
  for (const f of existingFields ?? []) if (f.name) existing.set(f.name.toLowerCase(), f); // column names are case-insensitive
  for (const want of RAW_TABLE_FIELDS) {
    const have = existing.get(want.name.toLowerCase());
    existing.delete(want.name.toLowerCase());
    if (!have) {
      problems.push(`column ${want.name} is missing (want ${want.type} ${want.mode})`);
      continue;
    }
    if (normalType(have.type) !== normalType(want.type)) {
      problems.push(`column ${want.name} is ${have.type ?? 'untyped'}, want ${want.type}`);
    }
    const haveMode = modeOf(have);
    if (haveMode === 'REPEATED') problems.push(`column ${want.name} is REPEATED, want ${want.mode}`);
    else if (haveMode === 'REQUIRED' && want.mode !== 'REQUIRED') {
      problems.push(`column ${want.name} is REQUIRED, want NULLABLE (raw rows may leave it NULL)`);
    }
  }
  for (const extra of existing.values()) {
    if (modeOf(extra) === 'REQUIRED') problems.push(`column ${extra.name} is REQUIRED but raw rows have no such column`);
  }
  return problems;
}

/**
 * The NULLABLE raw columns a table lacks, which BigQuery lets `tables.patch` add to an existing table (a
 * table made before the column existed); the table check adds them at start when auto-create is on.
 */
export function addableColumns(existingFields: readonly Partial<TableFieldSchema>[] | undefined | null): TableFieldSchema[] {
  const have = new Set((existingFields ?? []).map((f) => (f.name ?? '').toLowerCase()));
  return RAW_TABLE_FIELDS.filter((f) => f.mode === 'NULLABLE' && !have.has(f.name.toLowerCase())).map((f) => ({ ...f }));
}

/**
 * Differences in partitioning and clustering. They do not stop writes (inserts work whatever the layout),
 * so they are warnings, not start-up failures: queries are only slower or dearer.
 */
export function layoutWarnings(table: {
  timePartitioning?: { type?: string | null; field?: string | null } | null;
  clustering?: { fields?: readonly string[] | null } | null;
}): string[] {
  const warnings: string[] = [];
  const p = table.timePartitioning;
  if (!p || (p.type ?? '').toUpperCase() !== RAW_TABLE_PARTITIONING.type || p.field !== RAW_TABLE_PARTITIONING.field) {
    warnings.push(
      `the table is ${p ? `partitioned by ${p.type ?? '?'} on ${p.field ?? '_PARTITIONTIME'}` : 'not partitioned'}; ` +
        `the raw table is partitioned by ${RAW_TABLE_PARTITIONING.type} on ${RAW_TABLE_PARTITIONING.field}`,
    );
  }
  const fields = table.clustering?.fields ?? [];
  if (fields.join(',') !== RAW_TABLE_CLUSTERING.fields.join(',')) {
    warnings.push(
      `the table is ${fields.length ? `clustered by ${fields.join(', ')}` : 'not clustered'}; the raw table is clustered by ${RAW_TABLE_CLUSTERING.fields.join(', ')}`,
    );
  }
  return warnings;
}

/** The schema as a Markdown table, for docs/bigquery.md (a test checks the file holds exactly this). */
export function renderSchemaTable(): string {
  const rows = RAW_TABLE_FIELDS.map((f) => `| \`${f.name}\` | \`${f.type}\` | ${f.mode} | ${(f.description ?? '').replace(/\|/g, '\\|')} |`);
  return [
    '| column | type | mode | description |',
    '|---|---|---|---|',
    ...rows,
    '',
    `Partitioning: by ${RAW_TABLE_PARTITIONING.type} on \`${RAW_TABLE_PARTITIONING.field}\`. ` +
      `Clustering: by ${RAW_TABLE_CLUSTERING.fields.map((f) => `\`${f}\``).join(', ')}.`,
  ].join('\n');
}
