import { describe, expect, it } from 'vitest';
import { parseRoutes, describeProblem } from './routes-file.js';
import { compareTypedTable, typedTableFields, typedTableResource } from './table-schema.js';
import type { Route } from './types.js';

const CTX = { pubsubTopic: null, gcpProjectId: 'p', bigqueryDataset: 'ds', fileSink: false };

function route(fields: string, topic = 'plant/{site}/{line}/{area}/{cell}/{sensor}'): Route {
  const r = parseRoutes(`routes:\n  - name: r\n    topic: ${topic}\n    decode: json\n    fields:\n${fields}`, 'f', CTX);
  if (!r.table) throw new Error(r.problems.map(describeProblem).join('\n'));
  return r.table.routes[0]!;
}

const FIELDS = `      bar: { from: payload.bar, type: float }
      n: { from: payload.n, type: int }
      ok: { from: payload.ok, type: bool, optional: true }
      at: { from: payload.at, type: timestamp }
      doc: { from: payload.doc, type: json, optional: true }
      s: { from: payload.s, type: string }
`;

describe('typed table', () => {
  it('has the fixed columns, a STRING per topic variable, a column per field; day partitions, up to four clustering variables', () => {
    const r = route(FIELDS);
    expect(typedTableFields(r).map((f) => `${f.name} ${f.type} ${f.mode}`)).toEqual([
      'message_id STRING REQUIRED',
      'topic STRING REQUIRED',
      'received_at TIMESTAMP REQUIRED',
      'site STRING REQUIRED',
      'line STRING REQUIRED',
      'area STRING REQUIRED',
      'cell STRING REQUIRED',
      'sensor STRING REQUIRED',
      'bar FLOAT REQUIRED',
      'n INTEGER REQUIRED',
      'ok BOOLEAN NULLABLE',
      'at TIMESTAMP REQUIRED',
      'doc JSON NULLABLE',
      's STRING REQUIRED',
    ]);
    const res = typedTableResource(r);
    expect(res.timePartitioning).toEqual({ type: 'DAY', field: 'received_at' });
    expect(res.clustering).toEqual({ fields: ['site', 'line', 'area', 'cell'] });
    expect(typedTableResource(route(FIELDS, 'plain/topic')).clustering).toBeUndefined();
  });

  it('compares with an existing table: identical fits, Standard SQL names are the same types', () => {
    const r = route(FIELDS);
    const res = typedTableResource(r);
    expect(compareTypedTable(r, res)).toEqual({ add: [], differences: [], warnings: [] });
    const sql = res.schema.fields.map((f) => ({ ...f, type: ({ INTEGER: 'INT64', FLOAT: 'FLOAT64', BOOLEAN: 'BOOL' } as Record<string, string>)[f.type] ?? f.type }));
    expect(compareTypedTable(r, { ...res, schema: { fields: sql } }).differences).toEqual([]);
  });

  it('a new optional field gives the NULLABLE column to add', () => {
    const before = typedTableResource(route(FIELDS));
    const after = route(`${FIELDS}      extra: { from: payload.extra, type: int, optional: true }\n`);
    const c = compareTypedTable(after, before);
    expect(c.add).toEqual([expect.objectContaining({ name: 'extra', type: 'INTEGER', mode: 'NULLABLE' })]);
    expect(c.differences).toEqual([]);
  });

  it('anything else is a list of differences', () => {
    const before = typedTableResource(route(FIELDS));
    const after = route(`      bar: { from: payload.bar, type: string }
      n: { from: payload.n, type: int, optional: true }
      ok: { from: payload.ok, type: bool, optional: true }
      at: { from: payload.at, type: timestamp }
      doc: { from: payload.doc, type: json, optional: true }
      s: { from: payload.s, type: string }
      needed: { from: payload.needed, type: float }
`);
    const existing = { ...before, schema: { fields: [...before.schema.fields, { name: 'old', type: 'STRING', mode: 'REQUIRED' as const }] }, clustering: { fields: ['topic'] } };
    const c = compareTypedTable(after, existing);
    expect(c.add).toEqual([]);
    expect(c.differences).toEqual([
      'column bar is FLOAT, want STRING',
      'column n is REQUIRED, want NULLABLE (the field is optional)',
      expect.stringMatching(/^column needed is missing \(want FLOAT REQUIRED; BigQuery adds only NULLABLE columns/),
      "column old is REQUIRED but the route's rows have no such column",
    ]);
    expect(c.warnings).toEqual(['the table is clustered by topic; the route\'s table is clustered by site, line, area, cell']);
  });

  it('keeps a NULLABLE column of a removed field, and warns about another partitioning', () => {
    const before = typedTableResource(route(FIELDS));
    const after = route('      bar: { from: payload.bar, type: float }\n');
    const c = compareTypedTable(after, { ...before, timePartitioning: undefined });
    expect(c.differences.filter((d) => d.includes('ok') || d.includes('doc'))).toEqual([]);
    expect(c.differences).toEqual(expect.arrayContaining(["column n is REQUIRED but the route's rows have no such column"]));
    expect(c.warnings).toEqual([expect.stringMatching(/not partitioned/)]);
  });
});
