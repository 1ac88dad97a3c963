/**
 * Makes sure a table can take its rows (the raw rows, or a route's typed rows): it exists (created from its
 * shape when auto-create is on, its dataset too) and its columns are compatible (the shape's `compare`).
 *
 * The answer separates what is definite from what is not: a table whose columns do not fit, or a missing
 * table with auto-create off, is `mismatch` (the node refuses to start: writing would dead-letter every row);
 * a refused permission is `failing` and an unreachable BigQuery `unreachable` (the node starts, shows it in
 * readiness and checks again before it writes).
 */
import type { BigQuery } from '@google-cloud/bigquery';
import { classifyRequestError, RequestTimeoutError, type RequestErrorClass } from './classify.js';
import { addableColumns, layoutWarnings, rawTableResource, schemaDifferences, type TableFieldSchema } from './schema.js';

/**
 * What a table must look like to take one kind of rows: the raw rows (rawTableShape), or a route's typed rows
 * (src/routes/table-schema.ts). The check creates a missing table from `resource`, adds the NULLABLE columns
 * `compare` lists when auto-create is on, and stops at any difference.
 */
export interface TableShape {
  /** The rows it takes, in messages: "raw rows", "the rows of route pressure". */
  rows: string;
  /** The body of tables.insert without its tableReference: schema, partitioning, clustering, description. */
  resource(): Record<string, unknown>;
  /** How an existing table (tables.get) compares: NULLABLE columns to add, differences that stop writes, layout warnings. */
  compare(table: Record<string, unknown>): { add: TableFieldSchema[]; differences: string[]; warnings: string[] };
}

/** A route's table in the sink's dataset, and the shape of its rows. */
export interface RouteTable {
  table: string;
  shape: TableShape;
}

export interface TableTarget {
  projectId: string;
  dataset: string;
  table: string;
  location: string;
  autoCreate: boolean;
}

export type TableCheck =
  | { state: 'ready'; created: ('dataset' | 'table')[]; warnings: string[]; added?: string[] }
  | { state: 'mismatch'; problems: string[] }
  | { state: 'failing' | 'unreachable'; cls: RequestErrorClass };

/** `project:dataset.table`, as BigQuery names a table in its messages. */
export function tableName(t: Pick<TableTarget, 'projectId' | 'dataset' | 'table'>): string {
  return `${t.projectId}:${t.dataset}.${t.table}`;
}

/** Runs `call` and gives up after `ms` (the request itself cannot be cancelled through the client). */
export async function withTimeout<T>(call: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RequestTimeoutError(what, ms)), ms);
  });
  try {
    return await Promise.race([call, timeout]);
  } finally {
    clearTimeout(timer);
    // The losing request may still fail later; its error is not ours to report any more.
    call.catch(() => undefined);
  }
}

function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The raw table's shape: schema.ts defines it, compares a table with it and lists the columns BigQuery lets us add. */
export function rawTableShape(): TableShape {
  return {
    rows: 'raw rows',
    resource: () => rawTableResource(),
    compare(table) {
      const fields = (table.schema as { fields?: TableFieldSchema[] } | undefined)?.fields;
      const differences = schemaDifferences(fields);
      const missing = addableColumns(fields);
      // Missing NULLABLE columns are added only when they are the table's only differences; else all are listed.
      const onlyMissing = missing.length > 0 && differences.length === missing.length;
      return { add: onlyMissing ? missing : [], differences: onlyMissing ? [] : differences, warnings: layoutWarnings(table) };
    },
  };
}

/** `column x (TYPE NULLABLE), …`, as the start-up message names columns to add. */
function columnList(fields: readonly TableFieldSchema[]): string {
  return fields.map((f) => `${f.name} (${f.type} NULLABLE)`).join(', ');
}

function lacks(name: string, add: readonly TableFieldSchema[]): string {
  return `${name} lacks the columns ${columnList(add)}: turn BIGQUERY_AUTO_CREATE on for the node to add them at start, or add them yourself (docs/bigquery.md)`;
}

export async function checkTable(client: BigQuery, target: TableTarget, shape: TableShape, timeoutMs: number): Promise<TableCheck> {
  const name = tableName(target);
  const dataset = client.dataset(target.dataset, { location: target.location });
  const table = dataset.table(target.table);
  const created: ('dataset' | 'table')[] = [];
  const failed = (err: unknown): TableCheck => {
    const cls = classifyRequestError(err, name);
    return { state: cls.kind === 'failing' ? 'failing' : 'unreachable', cls };
  };

  /** A table as it is now (made by us, or completed): every column of the shape must be there. */
  const compare = (metadata: Record<string, unknown>): TableCheck => {
    const { add, differences, warnings } = shape.compare(metadata);
    const problems = [...differences, ...add.map((f) => `column ${f.name} is missing (want ${f.type} NULLABLE)`)];
    if (problems.length > 0) return { state: 'mismatch', problems };
    return { state: 'ready', created, warnings: warnings.map((w) => `${name}: ${w}`) };
  };

  /**
   * A table that lacks only NULLABLE columns of its shape (made before they existed) gets them through
   * tables.patch when auto-create is on; otherwise the start is refused naming them, as for any other difference.
   */
  const completeOrCompare = async (metadata: Record<string, unknown>): Promise<TableCheck> => {
    const { add, differences } = shape.compare(metadata);
    if (add.length === 0) return compare(metadata);
    if (differences.length > 0) return { state: 'mismatch', problems: target.autoCreate ? differences : [...differences, lacks(name, add)] };
    if (!target.autoCreate) return { state: 'mismatch', problems: [lacks(name, add)] };
    const fields = (metadata.schema as { fields?: TableFieldSchema[] } | undefined)?.fields ?? [];
    try {
      const [patched] = await withTimeout(table.setMetadata({ schema: { fields: [...fields, ...add] } }), timeoutMs, `tables.patch ${name}`);
      const check = compare(patched as Record<string, unknown>);
      return check.state === 'ready' ? { ...check, added: add.map((f) => f.name) } : check;
    } catch (err) {
      return failed(err);
    }
  };

  try {
    const [metadata] = await withTimeout(table.getMetadata(), timeoutMs, `tables.get ${name}`);
    return await completeOrCompare(metadata as Record<string, unknown>);
  } catch (err) {
    if (statusOf(err) !== 404) return failed(err);
  }
  if (!target.autoCreate) {
    return {
      state: 'mismatch',
      problems: [
        `${name} does not exist and BIGQUERY_AUTO_CREATE is off: create it with \`mqtt-ingest provision\` or turn BIGQUERY_AUTO_CREATE on`,
      ],
    };
  }

  try {
    await withTimeout(dataset.get(), timeoutMs, `datasets.get ${target.projectId}:${target.dataset}`);
  } catch (err) {
    if (statusOf(err) !== 404) return failed(err);
    try {
      await withTimeout(client.createDataset(target.dataset, { location: target.location }), timeoutMs, `datasets.insert ${target.dataset}`);
      created.push('dataset');
    } catch (createErr) {
      // 409: created meanwhile (another node starting at the same time, or the check of another table); anything else is reported.
      if (statusOf(createErr) !== 409) return failed(createErr);
    }
  }

  try {
    const [, response] = await withTimeout(dataset.createTable(target.table, shape.resource()), timeoutMs, `tables.insert ${name}`);
    created.push('table');
    return compare(response as Record<string, unknown>);
  } catch (err) {
    if (statusOf(err) !== 409) return failed(err);
  }
  // Created by someone else between our get and insert: check what they made.
  try {
    const [metadata] = await withTimeout(table.getMetadata(), timeoutMs, `tables.get ${name}`);
    return await completeOrCompare(metadata as Record<string, unknown>);
  } catch (err) {
    return failed(err);
  }
}
