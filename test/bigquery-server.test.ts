import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBigQueryServer, type BigQueryServer } from './helpers/bigquery-server.js';
import { rawTableResource } from '../src/sinks/bigquery/schema.js';

/** The local BigQuery server's own behaviour: the tests of the sink and of provision rely on it being strict. */
let s: BigQueryServer;
let base: string;
beforeEach(async () => {
  s = await startBigQueryServer();
  base = `${s.url}/bigquery/v2/projects/${s.projectId}`;
});
afterEach(async () => {
  await s.stop();
});

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

const row = (id: string, extra: Record<string, unknown> = {}) => ({
  insertId: id,
  json: { message_id: id, topic: 't', received_at: '2026-05-06T07:08:09.010Z', qos: 1, retain: false, payload: 'x', payload_encoding: 'utf8', data: null, ...extra },
});

async function rawTable(): Promise<void> {
  expect((await call('POST', '/datasets', { datasetReference: { datasetId: 'd' }, location: 'EU' })).status).toBe(200);
  expect((await call('POST', '/datasets/d/tables', { tableReference: { tableId: 't' }, ...rawTableResource() })).status).toBe(200);
}

describe('the local BigQuery server', () => {
  it('answers missing resources and duplicates in BigQuery error shape', async () => {
    expect(await call('GET', '/datasets/d')).toEqual({
      status: 404,
      json: { error: { code: 404, message: 'Not found: Dataset test-project:d', errors: [{ message: 'Not found: Dataset test-project:d', domain: 'global', reason: 'notFound' }], status: 'NOT_FOUND' } },
    });
    await rawTable();
    expect((await call('GET', '/datasets/d/tables/nope')).json.error.message).toBe('Not found: Table test-project:d.nope');
    expect((await call('POST', '/datasets/d/tables', { tableReference: { tableId: 't' }, ...rawTableResource() })).json.error).toMatchObject({ code: 409, errors: [{ reason: 'duplicate' }] });
    const got = await call('GET', '/datasets/d/tables/t');
    expect(got.json).toMatchObject({ id: 'test-project:d.t', location: 'EU', timePartitioning: { type: 'DAY', field: 'received_at' }, clustering: { fields: ['topic'] } });
  });

  it('refuses bad table definitions', async () => {
    await call('POST', '/datasets', { datasetReference: { datasetId: 'd' } });
    const fields = [{ name: 'a', type: 'STRING' }];
    expect((await call('POST', '/datasets/d/tables', { tableReference: { tableId: 'x' }, schema: { fields: [{ name: 'a', type: 'TEXT' }] } })).status).toBe(400);
    expect((await call('POST', '/datasets/d/tables', { tableReference: { tableId: 'x' }, schema: { fields }, timePartitioning: { type: 'DAY', field: 'a' } })).json.error.message).toContain(
      'can only be of type TIMESTAMP, DATE or DATETIME',
    );
    expect((await call('POST', '/datasets/d/tables', { tableReference: { tableId: 'x' }, schema: { fields }, clustering: { fields: ['b'] } })).status).toBe(400);
  });

  it('checks each row: unknown field, wrong type and missing REQUIRED are invalid, the others of the request stopped', async () => {
    await rawTable();
    const res = await call('POST', '/datasets/d/tables/t/insertAll', {
      rows: [row('1'), row('2', { extra: 1 }), row('3', { qos: 'one' }), row('4', { message_id: null }), row('5', { received_at: 'yesterday' }), row('6', { data: '{"a":' })],
    });
    expect(res.status).toBe(200);
    const byIndex = Object.fromEntries(res.json.insertErrors.map((e: any) => [e.index, e.errors[0]]));
    expect(byIndex[0]).toEqual({ reason: 'stopped', location: '', debugInfo: '', message: '' });
    expect(byIndex[1]).toMatchObject({ reason: 'invalid', location: 'extra', message: 'no such field.' });
    expect(byIndex[2]).toMatchObject({ reason: 'invalid', location: 'qos', message: 'Cannot convert value to integer (bad value): one' });
    expect(byIndex[3]).toMatchObject({ reason: 'invalid', location: 'message_id', message: 'Missing required field: message_id.' });
    expect(byIndex[4]).toMatchObject({ reason: 'invalid', location: 'received_at' });
    expect(byIndex[5]).toMatchObject({ reason: 'invalid', location: 'data' });
    expect(s.rows('d', 't')).toEqual([]);
  });

  it('inserts the valid rows only with skipInvalidRows, and de-duplicates by insertId', async () => {
    await rawTable();
    const res = await call('POST', '/datasets/d/tables/t/insertAll', { skipInvalidRows: true, rows: [row('1'), row('2', { extra: 1 })] });
    expect(res.json.insertErrors).toEqual([{ index: 1, errors: [expect.objectContaining({ reason: 'invalid' })] }]);
    expect((await call('POST', '/datasets/d/tables/t/insertAll', { rows: [row('1'), row('3')] })).json).toEqual({ kind: 'bigquery#tableDataInsertAllResponse' });
    expect(s.rows('d', 't').map((r) => r.insertId)).toEqual(['1', '3']);
    expect(s.duplicates).toBe(1);
  });

  it('fails, throttles and refuses oversized requests on demand', async () => {
    await rawTable();
    s.failNext(403, 1, { reason: 'quotaExceeded' });
    s.failNext(503, 1);
    const quota = await call('POST', '/datasets/d/tables/t/insertAll', { rows: [row('1')] });
    expect(quota.json.error).toMatchObject({ code: 403, errors: [{ reason: 'quotaExceeded', domain: 'usageLimits' }], status: 'PERMISSION_DENIED' });
    expect((await call('GET', '/datasets/d/tables/t')).status).toBe(200); // failNext aims at insertAll unless told otherwise
    expect((await call('POST', '/datasets/d/tables/t/insertAll', { rows: [row('1')] })).json.error).toMatchObject({ code: 503, errors: [{ reason: 'backendError' }] });
    const big = await call('POST', '/datasets/d/tables/t/insertAll', { rows: [row('2', { payload: 'z'.repeat(10_500_000) })] });
    expect(big.json.error).toMatchObject({ code: 400, message: 'Request payload size exceeds the limit: 10485760 bytes.', errors: [{ reason: 'badRequest' }] });
    expect(s.rows('d', 't')).toEqual([]);
  });
});

describe('the local BigQuery server with a typed table', () => {
  const TYPED = {
    schema: {
      fields: [
        { name: 'message_id', type: 'STRING', mode: 'REQUIRED' },
        { name: 'received_at', type: 'TIMESTAMP', mode: 'REQUIRED' },
        { name: 'site', type: 'STRING', mode: 'REQUIRED' },
        { name: 'n', type: 'INTEGER', mode: 'NULLABLE' },
        { name: 'bar', type: 'FLOAT', mode: 'NULLABLE' },
        { name: 'ok', type: 'BOOLEAN', mode: 'NULLABLE' },
        { name: 'at', type: 'TIMESTAMP', mode: 'NULLABLE' },
        { name: 's', type: 'STRING', mode: 'NULLABLE' },
        { name: 'doc', type: 'JSON', mode: 'NULLABLE' },
      ],
    },
    timePartitioning: { type: 'DAY', field: 'received_at' },
    clustering: { fields: ['site'] },
  };
  const typedRow = (cells: Record<string, unknown>) => ({ json: { message_id: 'm', received_at: '2026-05-06T07:08:09.010Z', site: 'hh', ...cells } });
  async function typedTable(): Promise<void> {
    await call('POST', '/datasets', { datasetReference: { datasetId: 'd' } });
    expect((await call('POST', '/datasets/d/tables', { tableReference: { tableId: 'typed' }, ...TYPED })).status).toBe(200);
  }
  /** The errors BigQuery gives the one row of a request, or [] when it stored it. */
  async function errorsOf(cells: Record<string, unknown>): Promise<{ location: string; message: string }[]> {
    const res = await call('POST', '/datasets/d/tables/typed/insertAll', { rows: [typedRow(cells)] });
    expect(res.status).toBe(200);
    return res.json.insertErrors?.[0]?.errors ?? [];
  }

  it('keeps the schema, the partitioning and the clustering tables.insert was given', async () => {
    await typedTable();
    const got = await call('GET', '/datasets/d/tables/typed');
    expect(got.json).toMatchObject({ schema: TYPED.schema, timePartitioning: TYPED.timePartitioning, clustering: TYPED.clustering });
    expect(s.tables.get('d.typed')!.resource).toMatchObject(TYPED);
  });

  it.each([
    ['clustering on a FLOAT column', { clustering: { fields: ['bar'] } }, 'Field bar is of type FLOAT which is not supported for clustering.'],
    ['clustering on a JSON column', { clustering: { fields: ['doc'] } }, 'Field doc is of type JSON which is not supported for clustering.'],
    ['clustering on five columns', { clustering: { fields: ['site', 'n', 'ok', 'at', 's'] } }, 'Too many or too few clustering fields (1 to 4).'],
    ['partitioning on a STRING column', { timePartitioning: { type: 'DAY', field: 'site' } }, 'The type found is: STRING.'],
  ])('refuses %s', async (_what, over, words) => {
    await call('POST', '/datasets', { datasetReference: { datasetId: 'd' } });
    const res = await call('POST', '/datasets/d/tables', { tableReference: { tableId: 'typed' }, ...TYPED, ...over });
    expect(res.status).toBe(400);
    expect(res.json.error.message).toContain(words);
    expect(s.tables.has('d.typed')).toBe(false);
  });

  it.each([
    ['n', [42, -7, 2 ** 60, '42', '-9223372036854775808', '9223372036854775807', '007']],
    ['bar', [2.5, 0, -1e300, '2.5e3', '-.5', '42']],
    ['ok', [true, false, 'true', 'FALSE']],
    ['at', ['2026-05-06T07:08:09.010Z', '2024-02-29T23:59:59.123456+02:00', '2026-05-06 07:08:09 UTC', '2026-05-06', 1714560000, 1714560000.25]],
    ['s', ['text', '', '{"not":"parsed"}']],
    ['doc', ['{"a":[1,2]}', '42', '"x"', 'null', '123456789012345678901234567890']],
  ])('takes %s as BigQuery does: %j', async (column, values) => {
    await typedTable();
    for (const v of values) expect(await errorsOf({ [column]: v }), `${column} = ${JSON.stringify(v)}`).toEqual([]);
    expect(s.rows('d', 'typed')).toHaveLength(values.length);
  });

  it.each([
    ['n', [1.5, '1.5', '1e3', ' 42', 'abc', '9223372036854775808', '-9223372036854775809', 2 ** 63, true], /^Cannot convert value to integer/],
    ['n', [{}, [1]], /is not a record|Array specified for non-repeated field/],
    ['bar', ['abc', '', '0x10', '1,5', true], /^Cannot convert value to floating point/],
    ['ok', ['yes', 1, 0, '1'], /^Cannot convert value to boolean/],
    ['at', ['yesterday', '2026-02-30T00:00:00Z', '2025-02-29', '2026-13-01', '2026-05-06T24:00:00Z', '0000-01-01T00:00:00Z', '2026-05-06T07:08:60Z', 1e12, true], /as a timestamp/],
    ['s', [42, true], /^Cannot convert value to string/],
    ['doc', [42, '{"a":', 'undefined'], /^Cannot convert value to JSON|^Invalid JSON/],
    ['doc', [{ a: 1 }], /is not a record/],
  ])('refuses %s values BigQuery refuses: %j', async (column, values, words) => {
    await typedTable();
    for (const v of values) {
      const errors = await errorsOf({ [column]: v });
      expect(errors, `${column} = ${JSON.stringify(v)}`).toEqual([expect.objectContaining({ reason: 'invalid', location: column, message: expect.stringMatching(words) })]);
    }
    expect(s.rows('d', 'typed')).toEqual([]);
  });

  it('refuses a row without a REQUIRED value (absent, null, or named in another case counts as given) and a row with an unknown field', async () => {
    await typedTable();
    expect(await errorsOf({ site: null })).toEqual([expect.objectContaining({ location: 'site', message: 'Missing required field: site.' })]);
    const noSite = typedRow({});
    delete (noSite.json as Record<string, unknown>).site;
    const res = await call('POST', '/datasets/d/tables/typed/insertAll', { rows: [noSite] });
    expect(res.json.insertErrors[0].errors).toEqual([expect.objectContaining({ location: 'site', message: 'Missing required field: site.' })]);
    const upper = typedRow({});
    delete (upper.json as Record<string, unknown>).site;
    expect((await call('POST', '/datasets/d/tables/typed/insertAll', { rows: [{ json: { ...upper.json, SITE: 'hh' } }] })).json.insertErrors).toBeUndefined();
    expect(await errorsOf({ sensor: 'p7' })).toEqual([expect.objectContaining({ location: 'sensor', message: 'no such field.' })]);
    expect(s.rows('d', 'typed')).toHaveLength(1);
  });

  it('fails the requests about one table only when told which, and answers testIamPermissions once it has grants', async () => {
    await rawTable();
    await typedTable();
    s.failNext(403, 1, { reason: 'accessDenied', which: 'all', table: 'd.typed' });
    expect((await call('GET', '/datasets/d/tables/t')).status).toBe(200);
    expect((await call('GET', '/datasets/d/tables/typed')).json.error).toMatchObject({ code: 403, errors: [{ reason: 'accessDenied' }] });
    expect((await call('GET', '/datasets/d/tables/typed')).status).toBe(200);

    const ask = () => call('POST', '/datasets/d/tables/typed:testIamPermissions', { permissions: ['bigquery.tables.get', 'bigquery.tables.updateData'] });
    expect((await ask()).status).toBe(404); // no such method until the test grants something
    s.grant('d.typed', ['bigquery.tables.get']);
    expect(await ask()).toEqual({ status: 200, json: { permissions: ['bigquery.tables.get'] } });
    expect((await call('POST', '/datasets/d/tables/t:testIamPermissions', { permissions: ['bigquery.tables.get'] })).json).toEqual({});
    expect((await call('POST', '/datasets/d/tables/gone:testIamPermissions', { permissions: ['bigquery.tables.get'] })).status).toBe(404);
  });
});
