import { describe, expect, it } from 'vitest';
import type { SpooledMessage } from '../../core/message.js';
import { sinkRouting } from '../../routes/destinations.js';
import { Router } from '../../routes/router.js';
import { describeProblem, parseRoutes } from '../../routes/routes-file.js';
import { typedTableResource } from '../../routes/table-schema.js';
import type { RoutesTable } from '../../routes/types.js';
import type { DeliveryMessage, SinkCondition } from '../sink.js';
import { RAW_TABLE_FIELDS } from './schema.js';
import { localBigQuerySinks } from '../../../test/helpers/bigquery-sink.js';
import { freePort, waitFor } from '../../../test/helpers/ports.js';
import { captureLogs } from '../../../test/helpers/log-capture.js';
import { observed } from '../../../test/contract/sink-contract.js';

/** The BigQuery sink with route tables (RouteTargets.bigquery), against the local BigQuery server. */
const { server, sink } = localBigQuerySinks();

const PRESSURE_FIELDS = `      bar: { from: payload.bar, type: float }
      count: { from: payload.count, type: int }
      ok: { from: payload.ok, type: bool, optional: true }
      at: { from: payload.at, type: timestamp }
      doc: { from: payload.doc, type: json, optional: true }
      status: { from: payload.status, type: string, optional: true }
`;

function routesFile(pressureFields = PRESSURE_FIELDS, unmatched = 'raw', flowType = 'float'): RoutesTable {
  const text = `routes:
  - name: pressure
    topic: plant/{site}/{line}/pressure/{sensor}
    decode: json
    fields:
${pressureFields}    pubsub: false
    bigquery: { table: pressure }
  - name: flow
    topic: plant/{site}/flow/{meter}
    decode: json
    fields:
      lpm: { from: payload.lpm, type: ${flowType} }
    pubsub: false
    bigquery: { table: flow }
unmatched: ${unmatched}
`;
  const r = parseRoutes(text, 'routes.yaml', { pubsubTopic: null, gcpProjectId: 'test-project', bigqueryDataset: 'telemetry', fileSink: false });
  if (!r.table) throw new Error(r.problems.map(describeProblem).join('\n'));
  return r.table;
}

let seq = 0;
const msg = (topic = 'plant/line-1/temp', payload: unknown = { t: 21.5 }, over: Partial<SpooledMessage> = {}): SpooledMessage => {
  seq += 1;
  return {
    seq,
    messageId: `01JROUTEDGHJKMNPQRSTV${String(seq).padStart(5, '0')}`,
    topic,
    payload: Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)),
    qos: 1,
    retain: false,
    receivedAt: Date.UTC(2026, 4, 6, 7, 8, 9, 10),
    ...over,
  };
};

/** The message as the sink runner hands it over: routed by the routes table, with the route's typed row. */
function routed(table: RoutesTable, m: SpooledMessage): DeliveryMessage {
  const out = new Router(table).route(m);
  if (out.kind !== 'routed' || !out.bigquery) throw new Error(`${m.topic} is not routed to BigQuery: ${JSON.stringify(out)}`);
  return { ...m, routed: { route: out.route.name, bigquery: { table: out.bigquery.table, rows: out.bigquery.rows } } };
}

const pressure = (table: RoutesTable, reading: Record<string, unknown> = {}) =>
  routed(table, msg('plant/hh/l2/pressure/p7', { bar: 4.2, count: 3, at: '2026-05-06T09:08:09.250+02:00', ...reading }));
const flow = (table: RoutesTable) => routed(table, msg('plant/hh/flow/m1', { lpm: 12.5 }));

const withRoutes = (table: RoutesTable) => {
  const r = sinkRouting(table);
  return { routeTables: r.bigqueryTables, rawTable: r.rawTable };
};

const columns = (fields: readonly { name: string; type: string; mode?: string }[]) => fields.map((f) => `${f.name} ${f.type} ${f.mode}`);


describe('BigQuerySink with route tables: start', () => {
  it('creates each route table with exactly its columns, DAY partitions on received_at and clustering by the topic variables, beside the raw table', async () => {
    const s = await server();
    await sink(s, withRoutes(routesFile())).start();
    const table = s.tables.get('telemetry.pressure')!.resource;
    expect(columns(table.schema.fields)).toEqual([
      'message_id STRING REQUIRED',
      'topic STRING REQUIRED',
      'received_at TIMESTAMP REQUIRED',
      'site STRING REQUIRED',
      'line STRING REQUIRED',
      'sensor STRING REQUIRED',
      'bar FLOAT REQUIRED',
      'count INTEGER REQUIRED',
      'ok BOOLEAN NULLABLE',
      'at TIMESTAMP REQUIRED',
      'doc JSON NULLABLE',
      'status STRING NULLABLE',
    ]);
    expect(table.timePartitioning).toEqual({ type: 'DAY', field: 'received_at' });
    expect(table.clustering).toEqual({ fields: ['site', 'line', 'sensor'] });
    expect(table.description).toMatch(/route pressure/);
    const flowTable = s.tables.get('telemetry.flow')!.resource;
    expect(columns(flowTable.schema.fields).slice(3)).toEqual(['site STRING REQUIRED', 'meter STRING REQUIRED', 'lpm FLOAT REQUIRED']);
    expect(flowTable.clustering).toEqual({ fields: ['site', 'meter'] });
    expect(s.tables.get('telemetry.raw')!.resource.schema.fields).toEqual(RAW_TABLE_FIELDS);
  });

  it('adds the NULLABLE column of a new optional field to the existing table at the next start (a new sink), and writes it', async () => {
    const s = await server();
    const before = routesFile();
    const first = sink(s, withRoutes(before));
    await first.start();
    await first.close();
    const after = routesFile(`${PRESSURE_FIELDS}      firmware: { from: property.fw, type: string, optional: true }\n`);
    const { logger, lines } = captureLogs();
    const second = sink(s, { ...withRoutes(after), logger });
    await second.start();
    expect(s.requests.filter((r) => r.method === 'PATCH').map((r) => r.path)).toEqual(['/bigquery/v2/projects/test-project/datasets/telemetry/tables/pressure']);
    const fields = s.tables.get('telemetry.pressure')!.resource.schema.fields;
    expect(columns(fields)).toEqual([...columns(typedTableResource(before.routes[0]!).schema.fields), 'firmware STRING NULLABLE']);
    expect(lines.find((l) => l.code === 'BIGQUERY_COLUMNS_ADDED')).toMatchObject({ table: 'test-project:telemetry.pressure', columns: ['firmware'] });
    const m = routed(after, msg('plant/hh/l2/pressure/p7', { bar: 1, count: 2, at: '2026-05-06T07:00:00Z' }, { properties: { userProperties: { fw: '3.1.4' } } }));
    expect(await second.write([m])).toEqual([{ kind: 'delivered' }]);
    expect(s.rows('telemetry', 'pressure').at(-1)!.json.firmware).toBe('3.1.4');
  });

  it('with auto-create off, refuses the start naming the column to add, changing nothing', async () => {
    const s = await server();
    await sink(s, withRoutes(routesFile())).start();
    const after = routesFile(`${PRESSURE_FIELDS}      firmware: { from: property.fw, type: string, optional: true }\n`);
    await expect(sink(s, { ...withRoutes(after), autoCreate: false }).start()).rejects.toThrow(
      'BigQuery table test-project:telemetry.pressure cannot take the rows of route pressure:\n  - test-project:telemetry.pressure lacks the columns firmware (STRING NULLABLE): turn BIGQUERY_AUTO_CREATE on',
    );
    expect(s.requests.some((r) => r.method === 'PATCH')).toBe(false);
  });

  it('stops the start on a REQUIRED-column difference, listing it, and with two such tables lists both, each under its name', async () => {
    const s = await server();
    await sink(s, withRoutes(routesFile())).start();
    const required = `${PRESSURE_FIELDS}      serial: { from: payload.serial, type: string }\n`;
    const one = await sink(s, withRoutes(routesFile(required))).start().then(() => undefined, (e: unknown) => e as Error & { code: string });
    expect(one?.code).toBe('SINK_START_FAILED');
    expect(one?.message).toBe(
      'BigQuery table test-project:telemetry.pressure cannot take the rows of route pressure:\n' +
        '  - column serial is missing (want STRING REQUIRED; BigQuery adds only NULLABLE columns: make the field optional, or use a new table)',
    );

    const two = await sink(s, withRoutes(routesFile(required, 'raw', 'int'))).start().then(() => undefined, (e: unknown) => e as Error & { code: string });
    expect(two?.code).toBe('SINK_START_FAILED');
    expect(two?.message).toContain('BigQuery table test-project:telemetry.pressure cannot take the rows of route pressure:\n  - column serial is missing');
    expect(two?.message).toContain('\nBigQuery table test-project:telemetry.flow cannot take the rows of route flow:\n  - column lpm is FLOAT, want INTEGER');
    expect(two?.message).not.toContain('telemetry.raw');
    expect(s.requests.some((r) => r.method === 'PATCH')).toBe(false);
  });

  it('with rawTable off (unmatched is not raw) neither checks nor creates the raw table, and refuses a message without a route as a defect', async () => {
    const s = await server();
    const table = routesFile(PRESSURE_FIELDS, 'dead_letter');
    const b = sink(s, withRoutes(table));
    await b.start();
    expect([...s.tables.keys()].sort()).toEqual(['telemetry.flow', 'telemetry.pressure']);
    expect(s.requests.some((r) => r.path.includes('/tables/raw'))).toBe(false);
    const outcomes = await b.write([msg(), pressure(table)]);
    expect(outcomes[0]).toMatchObject({ kind: 'rejected', reason: 'invalid', detail: expect.stringContaining('has no route table, and the raw table test-project:telemetry.raw takes no messages with these routes') });
    expect(outcomes[1]).toEqual({ kind: 'delivered' });
    expect(s.tables.has('telemetry.raw')).toBe(false);
  });

  it('starts when one table may not be read: that table is the condition, named, checked again until it is usable; the others take rows meanwhile', async () => {
    const s = await server();
    const table = routesFile();
    s.failNext(403, 1, { reason: 'accessDenied', which: 'all', table: 'telemetry.flow' });
    const b = sink(s, { ...withRoutes(table), recheckIntervalMs: 100 });
    const conditions: (SinkCondition | undefined)[] = [];
    b.watchCondition((c) => conditions.push(c));
    await b.start();
    expect(conditions.at(-1)).toMatchObject({ health: 'failing', reason: 'access_denied', detail: expect.stringMatching(/^test-project:telemetry\.flow: |credentials may not write to test-project:telemetry\.flow/) });
    expect(conditions.at(-1)!.detail).not.toMatch(/pressure|telemetry\.raw/);
    expect(s.tables.has('telemetry.flow')).toBe(false);
    expect(await b.write([pressure(table), msg()])).toEqual([{ kind: 'delivered' }, { kind: 'delivered' }]);
    await waitFor(() => conditions.at(-1) === undefined, 5_000, 'the recheck to find the flow table usable');
    expect(s.tables.has('telemetry.flow')).toBe(true);
  });

  it('starts while BigQuery is unreachable, naming every table in the condition, and writes to each once it answers', async () => {
    const port = await freePort();
    const table = routesFile();
    const b = sink({ url: `http://127.0.0.1:${port}`, projectId: 'test-project' }, withRoutes(table));
    await b.start();
    const view = observed(b);
    expect(view.status()).toMatchObject({ state: 'degraded', detail: 'writing to the tables of test-project:telemetry failed (unavailable); the dispatcher retries with backoff' });
    for (const name of ['raw', 'pressure', 'flow']) expect(view.status().lastError).toContain(`test-project:telemetry.${name}: `);
    const s = await server({ port });
    expect(await view.write([msg(), pressure(table), flow(table)])).toEqual([{ kind: 'delivered' }, { kind: 'delivered' }, { kind: 'delivered' }]);
    expect([s.rows('telemetry', 'raw').length, s.rows('telemetry', 'pressure').length, s.rows('telemetry', 'flow').length]).toEqual([1, 1, 1]);
    expect(view.status().state).toBe('ok');
  });
});

describe('BigQuerySink with route tables: write', () => {
  it('writes routed rows typed to their tables and raw rows to the raw table, insertId = message_id, one outcome per message in order', async () => {
    const s = await server();
    const table = routesFile();
    const b = sink(s, withRoutes(table));
    await b.start();
    const batch = [
      msg(),
      pressure(table, { ok: true, doc: { a: [1, 2] }, status: 'fine' }),
      flow(table),
      msg('plant/line-2/temp'),
      routed(table, msg('plant/hh/l2/pressure/p7', '{"bar": 4.2, "count": 9007199254740993, "at": "2026-05-06T07:08:09.250Z"}')),
    ];
    const before = s.requests.length;
    expect(await b.write(batch)).toEqual(batch.map(() => ({ kind: 'delivered' })));
    expect(s.requests.slice(before).map((r) => `${r.path.split('/').at(-2)} ${r.rows}`)).toEqual(['raw 2', 'pressure 2', 'flow 1']);
    expect(s.rows('telemetry', 'raw').map((r) => r.insertId)).toEqual([batch[0]!.messageId, batch[3]!.messageId]);
    const rows = s.rows('telemetry', 'pressure');
    expect(rows.map((r) => r.insertId)).toEqual([batch[1]!.messageId, batch[4]!.messageId]);
    expect(rows[0]!.json).toEqual({
      message_id: batch[1]!.messageId,
      topic: 'plant/hh/l2/pressure/p7',
      received_at: '2026-05-06T07:08:09.010Z',
      site: 'hh',
      line: 'l2',
      sensor: 'p7',
      bar: 4.2,
      count: 3,
      ok: true,
      at: '2026-05-06T07:08:09.250Z',
      doc: '{"a":[1,2]}',
      status: 'fine',
    });
    // Beyond 2^53 an integer travels as its digits, which BigQuery takes for an INTEGER column.
    expect(rows[1]!.json).toMatchObject({ count: '9007199254740993', ok: null, doc: null, status: null });
    expect(s.rows('telemetry', 'flow')[0]!.json).toMatchObject({ site: 'hh', meter: 'm1', lpm: 12.5 });
  });

  it('rejects alone the row BigQuery refuses in a batch mixing raw and routed rows, naming its table; the rest are stored', async () => {
    const s = await server();
    const table = routesFile();
    const b = sink(s, withRoutes(table));
    await b.start();
    const good = pressure(table);
    const bad = pressure(table);
    bad.routed!.bigquery!.rows[0]!.row = { ...bad.routed!.bigquery!.rows[0]!.row, bar: 'high' };
    const batch = [msg(), good, bad, flow(table), msg()];
    const outcomes = await b.write(batch);
    expect(outcomes.map((o) => o.kind)).toEqual(['delivered', 'delivered', 'rejected', 'delivered', 'delivered']);
    expect(outcomes[2]).toEqual({
      kind: 'rejected',
      reason: 'invalid',
      detail: 'test-project:telemetry.pressure: bar: Cannot convert value to floating point (bad value): high (invalid)',
    });
    expect(s.rows('telemetry', 'pressure').map((r) => r.insertId)).toEqual([good.messageId]);
    expect(s.rows('telemetry', 'raw')).toHaveLength(2);
    expect(s.rows('telemetry', 'flow')).toHaveLength(1);
  });

  it('stores a message of several rows (one per Sparkplug metric) with an insertId each, and refuses it whole when one row is refused', async () => {
    const s = await server();
    const table = routesFile();
    const b = sink(s, withRoutes(table));
    await b.start();
    const several = (n: number, bad?: number): DeliveryMessage => {
      const one = pressure(table);
      const base = one.routed!.bigquery!.rows[0]!.row;
      const rows = Array.from({ length: n }, (_, k) => ({ insertId: `${one.messageId}:${k}`, row: { ...base, bar: k === bad ? 'high' : k } }));
      return { ...one, routed: { ...one.routed!, bigquery: { table: 'pressure', rows } } };
    };
    const ok = several(3);
    const refused = several(3, 1);
    const outcomes = await b.write([ok, refused, msg()]);
    expect(outcomes.map((o) => o.kind)).toEqual(['delivered', 'rejected', 'delivered']);
    expect(outcomes[1]).toMatchObject({ reason: 'invalid', detail: expect.stringMatching(/^row 2 of 3: .*bar/) });
    const stored = s.rows('telemetry', 'pressure').map((r) => r.insertId);
    expect(stored.filter((id) => String(id).startsWith(ok.messageId))).toEqual([`${ok.messageId}:0`, `${ok.messageId}:1`, `${ok.messageId}:2`]);
    // Sent again (a retry after a restart), the stored rows are not stored twice.
    expect((await b.write([ok])).map((o) => o.kind)).toEqual(['delivered']);
    expect(s.rows('telemetry', 'pressure').filter((r) => String(r.insertId).startsWith(ok.messageId))).toHaveLength(3);
  });

  it('re-creates a route table deleted meanwhile before its next write, while another table keeps taking rows', async () => {
    const s = await server();
    const table = routesFile();
    const b = sink(s, withRoutes(table));
    await b.start();
    const view = observed(b);
    s.tables.delete('telemetry.pressure');
    const [lost, kept] = await view.write([pressure(table), flow(table)]);
    expect(lost).toMatchObject({ kind: 'retryable', reason: 'not_found', health: 'failing', detail: expect.stringContaining('test-project:telemetry.pressure') });
    expect(kept).toEqual({ kind: 'delivered' });
    expect(view.status()).toMatchObject({ state: 'failing', detail: expect.stringContaining('test-project:telemetry.pressure') });
    expect(await view.write([pressure(table), flow(table)])).toEqual([{ kind: 'delivered' }, { kind: 'delivered' }]);
    expect(s.tables.get('telemetry.pressure')!.resource).toMatchObject(typedTableResource(table.routes[0]!));
    expect(s.rows('telemetry', 'pressure')).toHaveLength(1);
    expect(s.rows('telemetry', 'flow')).toHaveLength(2);
    expect(view.status().state).toBe('ok');
  });

  it('rejects a routed row for a table it was not given, as a defect naming the table', async () => {
    const s = await server();
    const table = routesFile();
    const b = sink(s, withRoutes(table));
    await b.start();
    const stray = pressure(table);
    stray.routed!.bigquery!.table = 'elsewhere';
    const outcomes = await b.write([stray, flow(table)]);
    expect(outcomes[0]).toEqual({
      kind: 'rejected',
      reason: 'invalid',
      detail: `route pressure sent message ${stray.messageId} to table elsewhere, which is not one of the BigQuery sink's route tables (pressure, flow): the routes and the BigQuery sink's tables disagree`,
    });
    expect(outcomes[1]).toEqual({ kind: 'delivered' });
    expect(s.tables.has('telemetry.elsewhere')).toBe(false);
  });
});
