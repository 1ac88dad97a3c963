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
