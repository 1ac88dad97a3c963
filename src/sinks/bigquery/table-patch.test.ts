import { describe, expect, it } from 'vitest';
import { RAW_TABLE_FIELDS } from './schema.js';
import type { SpooledMessage } from '../../core/message.js';
import type { BigQueryServer } from '../../../test/helpers/bigquery-server.js';
import { localBigQuerySinks } from '../../../test/helpers/bigquery-sink.js';

const { server, sink } = localBigQuerySinks();

/** The raw table as a node without the property columns created it. */
const BEFORE_PROPERTIES = RAW_TABLE_FIELDS.filter((f) => f.name !== 'user_properties' && f.name !== 'content_type').map((f) => ({ ...f }));

const msg = (seq: number, over: Partial<SpooledMessage> = {}): SpooledMessage => ({
  seq,
  messageId: `01JABCDEFGHJKMNPQRSTV${String(seq).padStart(5, '0')}`,
  topic: 'plant/line-1/temp',
  payload: Buffer.from('{"t":21.5}'),
  qos: 1,
  retain: false,
  receivedAt: Date.UTC(2026, 4, 6, 7, 8, 9, 10),
  ...over,
});

describe('the raw table of an older version', () => {
  it('gets the property columns through tables.patch at start when auto-create is on, and takes rows with properties', async () => {
    const s = await server();
    s.createTable('telemetry', 'raw', { schema: { fields: BEFORE_PROPERTIES }, timePartitioning: { type: 'DAY', field: 'received_at' }, clustering: { fields: ['topic'] } });
    const b = sink(s);
    await b.start();
    expect(s.requests.filter((r) => r.method === 'PATCH').map((r) => r.path)).toEqual(['/bigquery/v2/projects/test-project/datasets/telemetry/tables/raw']);
    expect(s.tables.get('telemetry.raw')!.resource.schema.fields).toEqual(RAW_TABLE_FIELDS);
    const props = { userProperties: { site: 'Zürich', tag: ['a', 'b'] }, contentType: 'application/json' };
    expect(await b.write([msg(1, { properties: props }), msg(2)])).toEqual([{ kind: 'delivered' }, { kind: 'delivered' }]);
    expect(s.rows('telemetry', 'raw').map((r) => [r.json.user_properties, r.json.content_type])).toEqual([
      ['{"site":"Zürich","tag":["a","b"]}', 'application/json'],
      [null, null],
    ]);
  });

  it('refuses the start naming the columns to add when auto-create is off, changing nothing', async () => {
    const s = await server();
    s.createTable('telemetry', 'raw', { schema: { fields: BEFORE_PROPERTIES } });
    const err = await sink(s, { autoCreate: false }).start().then(() => undefined, (e: unknown) => e as Error & { code: string });
    expect(err?.code).toBe('SINK_START_FAILED');
    expect(err?.message).toContain('lacks the columns user_properties (JSON NULLABLE), content_type (STRING NULLABLE): turn BIGQUERY_AUTO_CREATE on');
    expect(s.requests.some((r) => r.method === 'PATCH')).toBe(false);
    expect(s.tables.get('telemetry.raw')!.resource.schema.fields).toEqual(BEFORE_PROPERTIES);
  });

  it('is not patched when another difference stops the start anyway', async () => {
    const s = await server();
    const fields = BEFORE_PROPERTIES.map((f) => (f.name === 'qos' ? { ...f, type: 'STRING' } : f));
    s.createTable('telemetry', 'raw', { schema: { fields } });
    await expect(sink(s).start()).rejects.toThrow(/column qos is STRING, want INTEGER/);
    expect(s.requests.some((r) => r.method === 'PATCH')).toBe(false);
  });
});

describe('the local BigQuery server: tables.patch as strict as BigQuery', () => {
  async function patch(s: BigQueryServer, fields: unknown[]): Promise<{ status: number; body: any }> {
    const res = await fetch(`${s.url}/bigquery/v2/projects/${s.projectId}/datasets/telemetry/tables/raw`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ schema: { fields } }),
    });
    return { status: res.status, body: await res.json() };
  }
  const base = [
    { name: 'message_id', type: 'STRING', mode: 'REQUIRED' },
    { name: 'qos', type: 'INTEGER', mode: 'NULLABLE' },
  ];

  it('adds NULLABLE columns, and relaxes REQUIRED to NULLABLE', async () => {
    const s = await server();
    s.createTable('telemetry', 'raw', { schema: { fields: base } });
    const added = [{ name: 'message_id', type: 'STRING', mode: 'NULLABLE' }, base[1], { name: 'extra', type: 'JSON', mode: 'NULLABLE' }, { name: 'other', type: 'STRING' }];
    const r = await patch(s, added);
    expect(r.status).toBe(200);
    expect(r.body.schema.fields).toEqual(added);
    expect(s.tables.get('telemetry.raw')!.resource.schema.fields).toEqual(added);
  });

  it.each([
    ['removing a column', [base[0]], 'Field qos is missing in new schema'],
    ['retyping a column', [base[0], { ...base[1], type: 'STRING' }], 'Field qos has changed type from INTEGER to STRING'],
    ['making a column REQUIRED', [base[0], { ...base[1], mode: 'REQUIRED' }], 'Field qos has changed mode from NULLABLE to REQUIRED'],
    ['adding a REQUIRED column', [...base, { name: 'extra', type: 'STRING', mode: 'REQUIRED' }], 'Cannot add required fields to an existing schema. (field: extra)'],
  ])('refuses %s with BigQuery\'s error, the table unchanged', async (_what, fields, words) => {
    const s = await server();
    s.createTable('telemetry', 'raw', { schema: { fields: base } });
    const r = await patch(s, fields);
    expect(r.status).toBe(400);
    expect(r.body).toEqual({
      error: {
        code: 400,
        message: `Provided Schema does not match Table test-project:telemetry.raw. ${words}`,
        errors: [{ message: `Provided Schema does not match Table test-project:telemetry.raw. ${words}`, domain: 'global', reason: 'invalid' }],
        status: 'INVALID_ARGUMENT',
      },
    });
    expect(s.tables.get('telemetry.raw')!.resource.schema.fields).toEqual(base);
  });
});
