/**
 * A local HTTP server implementing the BigQuery REST calls the node makes (there is no BigQuery emulator we
 * may rely on), as strictly as BigQuery (API reference: https://cloud.google.com/bigquery/docs/reference/rest):
 *
 * - datasets.get / datasets.insert, tables.get / tables.insert (schema, timePartitioning, clustering checked);
 * - tables.patch (PATCH): a schema may only add NULLABLE (or REPEATED) columns and relax REQUIRED to NULLABLE;
 *   removing or retyping a column, or adding a REQUIRED one, is refused as BigQuery refuses it (400 `invalid`,
 *   "Provided Schema does not match Table …");
 * - tabledata.insertAll: each row is checked against the table's schema (bigquery-rows.ts). Without
 *   `skipInvalidRows`, one invalid row makes the whole request insert nothing: the invalid rows get reason
 *   `invalid`, every other row of that request `stopped`, in a 200 response's `insertErrors`;
 * - de-duplication by `insertId` (BigQuery's is best effort over about a minute; this one keeps every id,
 *   and counts the duplicates it dropped in `duplicates`);
 * - errors in BigQuery's shape: `{ error: { code, message, errors: [{ message, domain, reason }], status } }`;
 *   a request over 10,485,760 bytes is refused whole with `badRequest`, as BigQuery does.
 *
 * Tests steer it: `failNext` (503, 429, 500, or 403 with reason rateLimitExceeded, quotaExceeded or
 * accessDenied; for every table, or one), `hang`, `rejectWhen` (refuse chosen rows as invalid), `grant`
 * (tables.testIamPermissions, which it answers only once told what to grant), and may seed or inspect
 * `datasets` and `tables`. It serves under `/bigquery/v2`, so it works both as the `apiEndpoint` host URL and as a
 * BIGQUERY_EMULATOR_HOST base URL (`${url}/bigquery/v2`).
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { rowErrors, type FieldSchema, type RowError } from './bigquery-rows.js';
import { tableDefinitionProblem } from './bigquery-tables.js';
import { DEFAULT_REASON, domainFor, errorBody, HttpError, messageFor } from './bigquery-errors.js';
import { PatchRefused, patchedFields } from './bigquery-patch.js';

export type { FieldSchema } from './bigquery-rows.js';

export interface StoredRow {
  insertId?: string;
  json: Record<string, unknown>;
}

/** A table as `tables.insert` takes it, without its `tableReference`. */
export interface TableBody {
  schema: { fields: FieldSchema[] };
  timePartitioning?: { type: string; field?: string };
  clustering?: { fields: string[] };
  description?: string;
  [key: string]: unknown;
}

export interface TableResource extends TableBody {
  tableReference: { projectId: string; datasetId: string; tableId: string };
}

export interface TableState {
  resource: TableResource;
  rows: StoredRow[];
  ids: Set<string>;
}

export interface LoggedRequest {
  method: string;
  path: string;
  status: number;
  /** insertAll only: rows in the request and their insertIds. */
  rows?: number;
  insertIds?: string[];
  /** Request body bytes. */
  bytes: number;
  /** The Authorization header, as received (tests check that none is sent to a local endpoint). */
  authorization?: string;
  at: number;
}

type Which = 'insertAll' | 'all';

export interface BigQueryServer {
  /** http://127.0.0.1:port: the host URL (BIGQUERY_API_ENDPOINT); the API is under `${url}/bigquery/v2`. */
  url: string;
  projectId: string;
  requests: LoggedRequest[];
  datasets: Map<string, { location: string }>;
  /** Keyed `dataset.table`. */
  tables: Map<string, TableState>;
  /** Rows whose insertId had already been stored (dropped, answered as inserted). */
  readonly duplicates: number;
  /**
   * The next `count` requests (insertAll only unless `which: 'all'`) fail with this status; with `table`
   * (`dataset.table`), only the requests about that table (tables.get, tables.patch, insertAll).
   */
  failNext(status: 503 | 429 | 500 | 403 | 404, count: number, opts?: { reason?: string; which?: Which; table?: string }): void;
  /** Forgets the failures still queued by failNext. */
  clearFailures(): void;
  /** While on, requests (insertAll only unless `which: 'all'`) are read and never answered. */
  hang(on: boolean, which?: Which): void;
  /**
   * What tables.testIamPermissions answers for a table (`dataset.table`): the permissions asked that are listed
   * here. Until the first grant the server has no such method (404), as an endpoint that lacks it.
   */
  grant(table: string, permissions: string[]): void;
  /** Rows the predicate answers a message for are refused as `invalid` with that message. */
  rejectWhen(predicate: ((row: Record<string, unknown>, table: string) => string | false | undefined) | undefined): void;
  /** The rows stored in a table, in insertion order. */
  rows(dataset: string, table: string): StoredRow[];
  createDataset(dataset: string, location?: string): void;
  createTable(dataset: string, table: string, resource: TableBody): void;
  stop(): Promise<void>;
}

/** BigQuery's HTTP request size limit for insertAll (its error message names this number). */
export const REQUEST_LIMIT_BYTES = 10_485_760;
const MAX_ROWS_PER_REQUEST = 50_000;

export async function startBigQueryServer(opts: { projectId?: string; port?: number } = {}): Promise<BigQueryServer> {
  const projectId = opts.projectId ?? 'test-project';
  const datasets = new Map<string, { location: string }>();
  const tables = new Map<string, TableState>();
  const requests: LoggedRequest[] = [];
  const failures: { status: number; reason: string; which: Which; table?: string }[] = [];
  let grants: Map<string, string[]> | undefined;
  let hanging: Which | undefined;
  let rejector: ((row: Record<string, unknown>, table: string) => string | false | undefined) | undefined;
  let duplicates = 0;
  const sockets = new Set<Socket>();

  const tableResource = (state: TableState) => ({
    kind: 'bigquery#table',
    id: `${projectId}:${state.resource.tableReference.datasetId}.${state.resource.tableReference.tableId}`,
    type: 'TABLE',
    location: datasets.get(state.resource.tableReference.datasetId)?.location ?? 'US',
    ...state.resource,
  });

  const handle = async (req: http.IncomingMessage, body: Buffer): Promise<{ status: number; json: unknown; rows?: unknown[] }> => {
    const path = new URL(req.url ?? '/', 'http://x').pathname.replace(/\/+$/, '');
    const iam = /^\/bigquery\/v2\/projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/]+):testIamPermissions$/.exec(path);
    if (iam && grants && req.method === 'POST') {
      const [, , dataset, table] = iam.map((s) => decodeURIComponent(s));
      if (!tables.has(`${dataset}.${table}`)) throw new HttpError(404, 'notFound', `Not found: Table ${projectId}:${dataset}.${table}`);
      const asked: unknown = parseJson(body).permissions;
      const mine = new Set(grants.get(`${dataset}.${table}`) ?? []);
      const permissions = Array.isArray(asked) ? asked.filter((p): p is string => typeof p === 'string' && mine.has(p)) : [];
      return { status: 200, json: permissions.length ? { permissions } : {} };
    }
    const m = /^\/bigquery\/v2\/projects\/([^/]+)\/datasets(?:\/([^/]+)(?:\/tables(?:\/([^/]+)(\/insertAll)?)?)?)?$/.exec(path);
    if (!m) throw new HttpError(404, 'notFound', `Not found: URL ${path}`);
    const [, project, dataset, table, insertAll] = m.map((s) => (s === undefined ? undefined : decodeURIComponent(s)));
    if (project !== projectId) throw new HttpError(404, 'notFound', `Not found: Project ${project}`);
    const json = body.length > 0 ? parseJson(body) : {};
    const isTables = path.includes('/tables');

    if (!dataset) {
      if (req.method !== 'POST') throw new HttpError(405, 'badRequest', 'Method not allowed');
      const id = json?.datasetReference?.datasetId;
      if (typeof id !== 'string' || !/^[A-Za-z0-9_]{1,1024}$/.test(id)) throw new HttpError(400, 'invalid', `Invalid dataset ID "${String(id)}".`);
      if (datasets.has(id)) throw new HttpError(409, 'duplicate', `Already Exists: Dataset ${projectId}:${id}`);
      datasets.set(id, { location: typeof json.location === 'string' ? json.location : 'US' });
      return { status: 200, json: datasetResource(id) };
    }
    if (!isTables) {
      if (req.method !== 'GET') throw new HttpError(405, 'badRequest', 'Method not allowed');
      if (!datasets.has(dataset)) throw new HttpError(404, 'notFound', `Not found: Dataset ${projectId}:${dataset}`);
      return { status: 200, json: datasetResource(dataset) };
    }
    if (!datasets.has(dataset)) throw new HttpError(404, 'notFound', `Not found: Dataset ${projectId}:${dataset}`);
    if (!table) {
      if (req.method !== 'POST') throw new HttpError(405, 'badRequest', 'Method not allowed');
      return { status: 200, json: tableResource(insertTable(dataset, json)) };
    }
    const state = tables.get(`${dataset}.${table}`);
    if (!state) throw new HttpError(404, 'notFound', `Not found: Table ${projectId}:${dataset}.${table}`);
    if (!insertAll) {
      if (req.method === 'PATCH') return { status: 200, json: tableResource(patchTable(state, json)) };
      if (req.method !== 'GET') throw new HttpError(405, 'badRequest', 'Method not allowed');
      return { status: 200, json: tableResource(state) };
    }
    if (req.method !== 'POST') throw new HttpError(405, 'badRequest', 'Method not allowed');
    return { status: 200, json: insertRows(state, `${dataset}.${table}`, json), rows: Array.isArray(json.rows) ? json.rows : [] };
  };

  const datasetResource = (id: string) => ({
    kind: 'bigquery#dataset',
    id: `${projectId}:${id}`,
    datasetReference: { projectId, datasetId: id },
    location: datasets.get(id)?.location ?? 'US',
  });

  const insertTable = (dataset: string, json: Record<string, any>): TableState => {
    const ref = json.tableReference ?? {};
    const id = ref.tableId;
    if (typeof id !== 'string' || id === '' || Buffer.byteLength(id) > 1024) throw new HttpError(400, 'invalid', `Invalid table ID "${String(id)}".`);
    if ((ref.datasetId ?? dataset) !== dataset || (ref.projectId ?? projectId) !== projectId) {
      throw new HttpError(400, 'invalid', 'tableReference does not match the request path.');
    }
    if (tables.has(`${dataset}.${id}`)) throw new HttpError(409, 'duplicate', `Already Exists: Table ${projectId}:${dataset}.${id}`);
    const problem = tableDefinitionProblem(json);
    if (problem) throw new HttpError(400, 'invalid', problem);
    const fields = json.schema.fields as FieldSchema[];
    const state: TableState = {
      resource: { ...json, tableReference: { projectId, datasetId: dataset, tableId: id }, schema: { fields } } as TableResource,
      rows: [],
      ids: new Set(),
    };
    tables.set(`${dataset}.${id}`, state);
    return state;
  };

  const patchTable = (state: TableState, json: Record<string, any>): TableState => {
    const ref = state.resource.tableReference;
    const { tableReference: _ignored, schema, ...rest } = json;
    let fields = state.resource.schema.fields;
    try {
      if (schema !== undefined) fields = patchedFields(`${projectId}:${ref.datasetId}.${ref.tableId}`, fields, schema?.fields);
    } catch (err) {
      if (err instanceof PatchRefused) throw new HttpError(400, 'invalid', err.message);
      throw err;
    }
    state.resource = { ...state.resource, ...rest, schema: { fields }, tableReference: ref };
    return state;
  };

  const insertRows = (state: TableState, name: string, json: Record<string, any>) => {
    const rows = json.rows;
    if (!Array.isArray(rows) || rows.length === 0) throw new HttpError(400, 'invalid', 'No rows present in the request.');
    if (rows.length > MAX_ROWS_PER_REQUEST) throw new HttpError(400, 'invalid', `too many rows present in the request, limit: ${MAX_ROWS_PER_REQUEST} row count: ${rows.length}.`);
    const errors: { index: number; errors: RowError[] }[] = [];
    rows.forEach((r: { json?: unknown }, index: number) => {
      const found = rowErrors(r?.json, state.resource.schema.fields, json.ignoreUnknownValues === true);
      const refused = found.length === 0 && rejector ? rejector(r.json as Record<string, unknown>, name) : undefined;
      if (refused) found.push({ reason: 'invalid', location: '', debugInfo: '', message: refused });
      if (found.length > 0) errors.push({ index, errors: found });
    });
    const skipInvalid = json.skipInvalidRows === true;
    if (errors.length > 0 && !skipInvalid) {
      // The request inserts nothing: every valid row is reported `stopped`, with empty words (as BigQuery does).
      const bad = new Set(errors.map((e) => e.index));
      rows.forEach((_: unknown, index: number) => {
        if (!bad.has(index)) errors.push({ index, errors: [{ reason: 'stopped', location: '', debugInfo: '', message: '' }] });
      });
      return { kind: 'bigquery#tableDataInsertAllResponse', insertErrors: errors };
    }
    const bad = new Set(errors.map((e) => e.index));
    rows.forEach((r: { insertId?: unknown; json: Record<string, unknown> }, index: number) => {
      if (bad.has(index)) return;
      const insertId = typeof r.insertId === 'string' && r.insertId !== '' ? r.insertId : undefined;
      if (insertId !== undefined) {
        if (state.ids.has(insertId)) {
          duplicates += 1;
          return;
        }
        state.ids.add(insertId);
      }
      state.rows.push({ insertId, json: r.json });
    });
    return errors.length > 0 ? { kind: 'bigquery#tableDataInsertAllResponse', insertErrors: errors } : { kind: 'bigquery#tableDataInsertAllResponse' };
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const isInsert = path.endsWith('/insertAll');
      const log: LoggedRequest = { method: req.method ?? '', path, status: 0, bytes: body.length, authorization: req.headers.authorization, at: Date.now() };
      requests.push(log);
      const send = (status: number, json: unknown) => {
        log.status = status;
        res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
        res.end(JSON.stringify(json));
      };
      if (hanging && (hanging === 'all' || isInsert)) return; // read, never answered: the client's timeout decides
      const about = /\/datasets\/([^/]+)\/tables\/([^/:]+)/.exec(path);
      const table = about ? `${decodeURIComponent(about[1]!)}.${decodeURIComponent(about[2]!)}` : undefined;
      const index = failures.findIndex((f) => (f.which === 'all' || isInsert) && (f.table === undefined || f.table === table));
      const failure = index >= 0 ? failures[index] : undefined;
      if (failure) {
        failures.splice(index, 1);
        return send(failure.status, errorBody(new HttpError(failure.status, failure.reason, messageFor(failure.reason), domainFor(failure.reason))));
      }
      if (isInsert && body.length > REQUEST_LIMIT_BYTES) {
        return send(400, errorBody(new HttpError(400, 'badRequest', `Request payload size exceeds the limit: ${REQUEST_LIMIT_BYTES} bytes.`)));
      }
      handle(req, body).then(
        (r) => {
          if (r.rows !== undefined) {
            log.rows = r.rows.length;
            log.insertIds = r.rows.map((row) => String((row as { insertId?: unknown } | null)?.insertId ?? ''));
          }
          send(r.status, r.json);
        },
        (err: unknown) => {
          const e = err instanceof HttpError ? err : new HttpError(500, 'internalError', String(err));
          send(e.status, errorBody(e));
        },
      );
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    projectId,
    requests,
    datasets,
    tables,
    get duplicates() {
      return duplicates;
    },
    failNext(status, count, o = {}) {
      for (let i = 0; i < count; i++) failures.push({ status, reason: o.reason ?? DEFAULT_REASON[status] ?? 'backendError', which: o.which ?? 'insertAll', table: o.table });
    },
    clearFailures() {
      failures.length = 0;
    },
    hang(on, which = 'insertAll') {
      hanging = on ? which : undefined;
    },
    grant(table, permissions) {
      grants ??= new Map();
      grants.set(table, permissions);
    },
    rejectWhen(predicate) {
      rejector = predicate;
    },
    rows(dataset, table) {
      return tables.get(`${dataset}.${table}`)?.rows ?? [];
    },
    createDataset(dataset, location = 'US') {
      datasets.set(dataset, { location });
    },
    createTable(dataset, table, resource) {
      if (!datasets.has(dataset)) datasets.set(dataset, { location: 'US' });
      tables.set(`${dataset}.${table}`, {
        resource: { ...resource, tableReference: { projectId, datasetId: dataset, tableId: table } },
        rows: [],
        ids: new Set(),
      });
    },
    async stop() {
      hanging = undefined;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

function parseJson(body: Buffer): Record<string, any> {
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, any>;
  } catch {
    // fall through
  }
  throw new HttpError(400, 'parseError', 'Parse Error');
}
