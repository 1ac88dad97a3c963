import { describe, expect, it } from 'vitest';
import type { BigQuerySink } from './bigquery-sink.js';
import { RAW_TABLE_FIELDS } from './schema.js';
import type { SpooledMessage } from '../../core/message.js';
import type { SinkCondition } from '../sink.js';
import { localBigQuerySinks } from '../../../test/helpers/bigquery-sink.js';
import { freePort, waitFor } from '../../../test/helpers/ports.js';
import { observed } from '../../../test/contract/sink-contract.js';

let seq = 0;
const msg = (over: Partial<SpooledMessage> = {}): SpooledMessage => {
  seq += 1;
  return {
    seq,
    messageId: `01JABCDEFGHJKMNPQRSTV${String(seq).padStart(5, '0')}`,
    topic: 'plant/line-1/temp',
    payload: Buffer.from(JSON.stringify({ seq, t: 21.5 })),
    qos: 1,
    retain: false,
    receivedAt: Date.UTC(2026, 4, 6, 7, 8, 9, 10),
    ...over,
  };
};

const { server, sink } = localBigQuerySinks();

describe('BigQuerySink start', () => {
  it('creates the missing dataset and table with the raw schema, partitioning and clustering, sending no credentials', async () => {
    const s = await server();
    await sink(s, { location: 'EU' }).start();
    expect(s.datasets.get('telemetry')).toEqual({ location: 'EU' });
    const table = s.tables.get('telemetry.raw')!.resource;
    expect(table.schema.fields).toEqual(RAW_TABLE_FIELDS);
    expect(table.timePartitioning).toEqual({ type: 'DAY', field: 'received_at' });
    expect(table.clustering).toEqual({ fields: ['topic'] });
    expect(s.requests.every((r) => r.authorization === undefined)).toBe(true);
  });

  it('refuses to start on a table whose columns do not fit, listing every difference', async () => {
    const s = await server();
    const fields = RAW_TABLE_FIELDS.filter((f) => f.name !== 'data').map((f) => (f.name === 'qos' ? { ...f, type: 'STRING' } : { ...f }));
    s.createTable('telemetry', 'raw', { schema: { fields } });
    const err = await sink(s).start().then(() => undefined, (e: unknown) => e as Error & { code: string });
    expect(err?.code).toBe('SINK_START_FAILED');
    expect(err?.message).toContain('BigQuery table test-project:telemetry.raw cannot take raw rows:\n  - column qos is STRING, want INTEGER');
    expect(err?.message).toContain('\n  - column data is missing (want JSON NULLABLE)');
    expect(s.tables.get('telemetry.raw')!.resource.schema.fields).toEqual(fields); // left as it was
  });

  it('refuses to start when the table is missing and auto-create is off', async () => {
    const s = await server();
    await expect(sink(s, { autoCreate: false }).start()).rejects.toThrow(/does not exist and BIGQUERY_AUTO_CREATE is off/);
    expect(s.tables.size).toBe(0);
  });

  it('starts while BigQuery is unreachable, says so, and checks again before the first write', async () => {
    const port = await freePort();
    const b = sink({ url: `http://127.0.0.1:${port}`, projectId: 'test-project' });
    await b.start();
    const view = observed(b);
    expect(view.status()).toMatchObject({ state: 'degraded' });
    expect(view.status().lastError).toMatch(/unavailable/);
    expect((await view.write([msg()]))[0]).toMatchObject({ kind: 'retryable', reason: 'unavailable' });

    const s = await server({ port });
    expect(await view.write([msg(), msg()])).toEqual([{ kind: 'delivered' }, { kind: 'delivered' }]);
    expect(s.rows('telemetry', 'raw')).toHaveLength(2);
    expect(view.status().state).toBe('ok');
  });

  it('checks the table again while nothing is written, and reports when it is usable; close stops the checks', async () => {
    const port = await freePort();
    const b = sink({ url: `http://127.0.0.1:${port}`, projectId: 'test-project' }, { recheckIntervalMs: 100 });
    const conditions: (SinkCondition | undefined)[] = [];
    b.watchCondition((c) => conditions.push(c));
    expect(conditions).toEqual([undefined]);
    await b.start();
    expect(conditions[1]).toMatchObject({ health: 'degraded', reason: 'unavailable' });
    const s = await server({ port });
    await waitFor(() => conditions.length > 2 && conditions.at(-1) === undefined, 5_000, 'the recheck to find the table usable');
    expect(s.tables.has('telemetry.raw')).toBe(true);

    const closed = sink({ url: `http://127.0.0.1:${await freePort()}`, projectId: 'test-project' }, { recheckIntervalMs: 50 });
    await closed.start();
    const before = s.requests.length;
    await closed.close();
    await new Promise((r) => setTimeout(r, 200));
    expect(s.requests.length).toBe(before);
  });

  it('honours an emulator base URL given in full, as BIGQUERY_EMULATOR_HOST is read', async () => {
    const s = await server();
    const b = sink(s, { apiEndpoint: undefined, emulatorHost: `${s.url}/bigquery/v2/` });
    await b.start();
    expect(await b.write([msg()])).toEqual([{ kind: 'delivered' }]);
    expect(s.requests.map((r) => r.path)).toContain('/bigquery/v2/projects/test-project/datasets/telemetry/tables/raw/insertAll');
  });
});

describe('BigQuerySink write', () => {
  it('stores good rows once with insertId = message_id, rejects bad rows with the server reason, retries the stopped ones at once', async () => {
    const s = await server();
    const b = sink(s);
    await b.start();
    const view = observed(b);
    s.rejectWhen((row) => (String(row.topic).startsWith('bad/') ? 'refused by a test rule' : undefined));
    const batch = [msg(), msg({ topic: 'bad/1' }), msg(), msg({ topic: 'bad/2' }), msg()];
    const before = s.requests.length;
    const outcomes = await view.write(batch);
    expect(outcomes.map((o) => o.kind)).toEqual(['delivered', 'rejected', 'delivered', 'rejected', 'delivered']);
    expect(outcomes[1]).toEqual({ kind: 'rejected', reason: 'invalid', detail: 'refused by a test rule (invalid)' });
    expect(s.requests.length - before).toBe(2); // the batch, then its three stopped rows alone
    const stored = s.rows('telemetry', 'raw');
    expect(stored.map((r) => r.insertId)).toEqual([batch[0]!.messageId, batch[2]!.messageId, batch[4]!.messageId]);
    expect(stored.every((r) => r.json.message_id === r.insertId)).toBe(true);
    expect(view.status().state).toBe('ok');
  });

  it('rejects a row BigQuery itself finds invalid (JSON nested deeper than 500)', async () => {
    const s = await server();
    const b = sink(s);
    await b.start();
    const deep = '['.repeat(600) + ']'.repeat(600);
    const outcomes = await b.write([msg({ payload: Buffer.from(deep) }), msg()]);
    expect(outcomes[0]).toMatchObject({ kind: 'rejected', reason: 'invalid', detail: expect.stringContaining('data: JSON nesting depth 600') });
    expect(outcomes[1]).toEqual({ kind: 'delivered' });
  });

  it('answers a 503 or throttling (403 rateLimitExceeded) as retryable for the whole batch, then recovers', async () => {
    const s = await server();
    const b = sink(s);
    await b.start();
    const view = observed(b);
    s.failNext(503, 1);
    expect((await view.write([msg(), msg()])).map((o) => o.kind === 'retryable' && o.reason)).toEqual(['backend_error', 'backend_error']);
    expect(view.status().state).toBe('degraded');
    s.failNext(403, 1, { reason: 'rateLimitExceeded' });
    expect((await view.write([msg()]))[0]).toMatchObject({ kind: 'retryable', reason: 'rate_limited' });
    s.failNext(403, 1, { reason: 'quotaExceeded' });
    expect((await view.write([msg()]))[0]).toMatchObject({ kind: 'retryable', reason: 'quota_exceeded' });
    expect(await view.write([msg()])).toEqual([{ kind: 'delivered' }]);
    expect(view.status().state).toBe('ok');
  });

  it('makes one attempt per write: the client retries nothing itself', async () => {
    const s = await server();
    const b = sink(s);
    await b.start();
    s.failNext(503, 3);
    const before = s.requests.length;
    await b.write([msg()]);
    expect(s.requests.length - before).toBe(1);
  });

  it('shows accessDenied as failing with what to fix, and keeps the rows retryable', async () => {
    const s = await server();
    const b = sink(s);
    await b.start();
    const view = observed(b);
    s.failNext(403, 1, { reason: 'accessDenied' });
    expect((await view.write([msg()]))[0]).toMatchObject({ kind: 'retryable', reason: 'access_denied' });
    expect(view.status()).toMatchObject({ state: 'failing', detail: expect.stringContaining('roles/bigquery.dataEditor') });
  });

  it('gives up on a request that hangs after requestTimeoutMs, as retryable', async () => {
    const s = await server();
    const b = sink(s, { requestTimeoutMs: 300 });
    await b.start();
    s.hang(true);
    const t0 = Date.now();
    expect((await b.write([msg()]))[0]).toMatchObject({ kind: 'retryable', reason: 'timeout' });
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('re-creates a table deleted while running, and delivers after it', async () => {
    const s = await server();
    const b = sink(s);
    await b.start();
    const view = observed(b);
    s.tables.delete('telemetry.raw');
    expect((await view.write([msg()]))[0]).toMatchObject({ kind: 'retryable', reason: 'not_found' });
    expect(view.status().state).toBe('failing');
    expect(await view.write([msg()])).toEqual([{ kind: 'delivered' }]);
    expect(s.tables.has('telemetry.raw')).toBe(true);
  });

  it('a table deleted and re-created so that it cannot take raw rows is failing, with the differences, until it is fixed', async () => {
    const s = await server();
    const b = sink(s);
    await b.start();
    const view = observed(b);
    s.tables.delete('telemetry.raw');
    expect((await view.write([msg()]))[0]).toMatchObject({ kind: 'retryable', reason: 'not_found', health: 'failing' });
    s.createTable('telemetry', 'raw', { schema: { fields: RAW_TABLE_FIELDS.map((f) => (f.name === 'data' ? { ...f, type: 'STRING' } : f)) } });
    const [outcome] = await view.write([msg()]);
    expect(outcome).toMatchObject({ kind: 'retryable', reason: 'schema_mismatch', health: 'failing', detail: expect.stringContaining('column data is STRING, want JSON') });
    expect(view.status()).toMatchObject({ state: 'failing', detail: expect.stringMatching(/^the table cannot take raw rows: .*column data is STRING, want JSON/) });
    s.tables.delete('telemetry.raw');
    expect(await view.write([msg()])).toEqual([{ kind: 'delivered' }]);
    expect(view.status().state).toBe('ok');
  });

  it('splits a batch into requests under the byte limit, and rejects a row too large for any request', async () => {
    const s = await server();
    const b = sink(s, { maxRequestBytes: 50_000 });
    await b.start();
    const before = s.requests.length;
    const batch = Array.from({ length: 20 }, () => msg({ payload: Buffer.from(JSON.stringify({ pad: 'x'.repeat(5_000) })) }));
    const huge = msg({ payload: Buffer.alloc(8_000_000, 0xff) }); // base64 makes it over 10 MiB
    const outcomes = await b.write([...batch, huge]);
    expect(outcomes.slice(0, 20).every((o) => o.kind === 'delivered')).toBe(true);
    expect(outcomes[20]).toMatchObject({ kind: 'rejected', reason: 'too_large' });
    const inserts = s.requests.slice(before).filter((r) => r.path.endsWith('/insertAll'));
    expect(inserts.length).toBeGreaterThan(1);
    expect(inserts.every((r) => r.bytes <= 50_000)).toBe(true);
    expect(s.rows('telemetry', 'raw')).toHaveLength(20);
  });

  it('halves a request BigQuery refuses as too large until each part fits', async () => {
    const s = await server();
    const b = sink(s, { maxRequestBytes: 40_000_000 }); // above BigQuery's limit, so the server refuses the whole
    await b.start();
    const big = () => msg({ payload: Buffer.from(JSON.stringify({ pad: 'y'.repeat(1_500_000) })) }); // ~3 MB as a row
    const outcomes = await b.write([big(), big(), big(), big(), big()]);
    expect(outcomes.every((o) => o.kind === 'delivered')).toBe(true);
    const statuses = s.requests.filter((r) => r.path.endsWith('/insertAll')).map((r) => r.status);
    expect(statuses[0]).toBe(400);
    expect(s.rows('telemetry', 'raw')).toHaveLength(5);
  });
});

describe('BigQuerySink with a partial failure it cannot read', () => {
  /** Makes insertAll answer 200 with this `insertErrors` (as BigQuery's response body carries it). */
  function failPartially(b: BigQuerySink, insertErrors: unknown): void {
    const table = (b as unknown as { tableRef: { request: (...args: unknown[]) => Promise<unknown> } }).tableRef;
    table.request = async () => [{ kind: 'bigquery#tableDataInsertAllResponse', insertErrors }];
  }

  it.each([
    ['not a list', { index: 0 }],
    ['a list holding something that is not an entry', ['invalid']],
    ['a row index outside the request', [{ index: 7, errors: [{ reason: 'invalid' }] }]],
    ['an entry without an index', [{ errors: [{ reason: 'invalid' }] }]],
    ['errors that are not a list', [{ index: 0, errors: 'invalid' }]],
  ])('marks the whole batch retryable, never delivered, when insertErrors is %s', async (_, insertErrors) => {
    const s = await server();
    const b = sink(s);
    await b.start();
    const view = observed(b);
    failPartially(b, insertErrors);
    const outcomes = await view.write([msg(), msg(), msg()]);
    expect(outcomes).toHaveLength(3);
    for (const o of outcomes) expect(o).toMatchObject({ kind: 'retryable', reason: 'unreadable_response' });
    expect(view.status()).toMatchObject({ state: 'degraded', lastError: expect.stringMatching(/^unreadable_response: /) });
  });

  it('takes a response without insertErrors, or with an empty list, as every row stored', async () => {
    for (const insertErrors of [undefined, []]) {
      const s = await server();
      const b = sink(s);
      await b.start();
      failPartially(b, insertErrors);
      expect((await b.write([msg(), msg()])).map((o) => o.kind)).toEqual(['delivered', 'delivered']);
    }
  });

  it('still reads a well-formed list row by row', async () => {
    const s = await server();
    const b = sink(s);
    await b.start();
    failPartially(b, [{ index: 1, errors: [{ reason: 'invalid', message: 'bad row' }] }]);
    const outcomes = await b.write([msg(), msg()]);
    expect(outcomes[0]).toEqual({ kind: 'delivered' });
    expect(outcomes[1]).toMatchObject({ kind: 'rejected', reason: 'invalid' });
  });
});
