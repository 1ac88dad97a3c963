import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { SpooledMessage } from '../../core/message.js';
import {
  layoutWarnings,
  RAW_TABLE_CLUSTERING,
  RAW_TABLE_FIELDS,
  RAW_TABLE_PARTITIONING,
  rawTableResource,
  renderSchemaTable,
  schemaDifferences,
  toRawRow,
} from './schema.js';
import { extractGenerated } from './schema-docs.js';

const msg = (over: Partial<SpooledMessage> = {}): SpooledMessage => ({
  seq: 1,
  messageId: '01JABCDEFGHJKMNPQRSTVWXYZ0',
  topic: 'plant/line-1/temp',
  payload: Buffer.from('{"t":21.5,"unit":"C"}'),
  qos: 1,
  retain: false,
  receivedAt: Date.UTC(2026, 4, 6, 7, 8, 9, 10),
  ...over,
});

describe('the raw table definition', () => {
  it('has the contract columns, types and modes, each described', () => {
    expect(RAW_TABLE_FIELDS.map((f) => [f.name, f.type, f.mode])).toEqual([
      ['message_id', 'STRING', 'REQUIRED'],
      ['topic', 'STRING', 'REQUIRED'],
      ['received_at', 'TIMESTAMP', 'REQUIRED'],
      ['qos', 'INTEGER', 'NULLABLE'],
      ['retain', 'BOOLEAN', 'NULLABLE'],
      ['payload', 'STRING', 'NULLABLE'],
      ['payload_encoding', 'STRING', 'NULLABLE'],
      ['data', 'JSON', 'NULLABLE'],
      ['user_properties', 'JSON', 'NULLABLE'],
      ['content_type', 'STRING', 'NULLABLE'],
    ]);
    for (const f of RAW_TABLE_FIELDS) expect(f.description?.length).toBeGreaterThan(10);
    expect(RAW_TABLE_PARTITIONING).toEqual({ type: 'DAY', field: 'received_at' });
    expect(RAW_TABLE_CLUSTERING).toEqual({ fields: ['topic'] });
  });

  it('gives tables.insert a body with schema, partitioning and clustering, and no table reference', () => {
    const body = rawTableResource();
    expect(body.schema.fields).toEqual(RAW_TABLE_FIELDS);
    expect(body.timePartitioning).toEqual({ type: 'DAY', field: 'received_at' });
    expect(body.clustering).toEqual({ fields: ['topic'] });
    expect(body).not.toHaveProperty('tableReference');
    body.schema.fields[0]!.name = 'changed'; // a copy: the definition itself cannot be changed through it
    expect(RAW_TABLE_FIELDS[0]!.name).toBe('message_id');
  });
});

describe('toRawRow', () => {
  it('builds exactly the schema columns, data as the JSON text of a JSON payload', () => {
    const row = toRawRow(msg());
    expect(Object.keys(row)).toEqual(RAW_TABLE_FIELDS.map((f) => f.name));
    expect(row).toEqual({
      message_id: '01JABCDEFGHJKMNPQRSTVWXYZ0',
      topic: 'plant/line-1/temp',
      received_at: '2026-05-06T07:08:09.010Z',
      qos: 1,
      retain: false,
      payload: '{"t":21.5,"unit":"C"}',
      payload_encoding: 'utf8',
      data: '{"t":21.5,"unit":"C"}',
      user_properties: null,
      content_type: null,
    });
  });

  it('gives the MQTT 5 properties as JSON text and a string', () => {
    const row = toRawRow(msg({ properties: { userProperties: { site: 'Zürich', tag: ['a', 'b'] }, contentType: 'application/json' } }));
    expect(row).toMatchObject({ user_properties: '{"site":"Zürich","tag":["a","b"]}', content_type: 'application/json' });
    expect(toRawRow(msg({ properties: { contentType: 'text/plain' } }))).toMatchObject({ user_properties: null, content_type: 'text/plain' });
  });

  it('keeps JSON numbers beyond 2^53 as written', () => {
    expect(toRawRow(msg({ payload: Buffer.from('{"n":12345678901234567890}') })).data).toBe('{"n":12345678901234567890}');
  });

  it('takes JSON scalars and arrays as JSON, and plain text as NULL data', () => {
    expect(toRawRow(msg({ payload: Buffer.from('21.5') })).data).toBe('21.5');
    expect(toRawRow(msg({ payload: Buffer.from('[1,2]') })).data).toBe('[1,2]');
    expect(toRawRow(msg({ payload: Buffer.from('hello') }))).toMatchObject({ payload: 'hello', payload_encoding: 'utf8', data: null });
    expect(toRawRow(msg({ payload: Buffer.alloc(0) }))).toMatchObject({ payload: '', payload_encoding: 'utf8', data: null });
  });

  it('encodes a binary payload as base64 with NULL data', () => {
    const bytes = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0xc3, 0x28]);
    const row = toRawRow(msg({ payload: bytes, qos: 0, retain: true }));
    expect(row).toMatchObject({ payload: bytes.toString('base64'), payload_encoding: 'base64', data: null, qos: 0, retain: true });
    expect(Buffer.from(row.payload, 'base64').equals(bytes)).toBe(true);
  });
});

describe('schemaDifferences', () => {
  const ours = () => RAW_TABLE_FIELDS.map((f) => ({ ...f }));

  it('is empty for the raw schema, for legacy or Standard SQL type names, and for extra NULLABLE columns', () => {
    expect(schemaDifferences(ours())).toEqual([]);
    const aliased = ours().map((f) => ({ ...f, type: f.type === 'INTEGER' ? 'INT64' : f.type === 'BOOLEAN' ? 'BOOL' : f.type }));
    expect(schemaDifferences(aliased)).toEqual([]);
    expect(schemaDifferences([...ours(), { name: 'site', type: 'STRING', mode: 'NULLABLE' }])).toEqual([]);
    // REQUIRED in the table where the row always fills it, or mode left out (NULLABLE): still fine
    expect(schemaDifferences(ours().map((f) => (f.name === 'qos' ? { name: 'qos', type: 'INTEGER' } : f)))).toEqual([]);
  });

  it('lists every difference at once', () => {
    const fields = ours()
      .filter((f) => f.name !== 'payload_encoding')
      .map((f) => (f.name === 'data' ? { ...f, type: 'STRING' } : f.name === 'payload' ? { ...f, mode: 'REQUIRED' as const } : f));
    fields.push({ name: 'line', type: 'STRING', mode: 'REQUIRED', description: '' });
    fields.push({ name: 'tags', type: 'STRING', mode: 'NULLABLE', description: '' });
    expect(schemaDifferences(fields)).toEqual([
      'column payload is REQUIRED, want NULLABLE (raw rows may leave it NULL)',
      'column payload_encoding is missing (want STRING NULLABLE)',
      'column data is STRING, want JSON',
      'column line is REQUIRED but raw rows have no such column',
    ]);
  });

  it('treats a missing schema as every column missing', () => {
    expect(schemaDifferences(undefined)).toHaveLength(RAW_TABLE_FIELDS.length);
  });
});

describe('layoutWarnings', () => {
  it('says nothing for the raw layout and names a different one', () => {
    expect(layoutWarnings(rawTableResource())).toEqual([]);
    expect(layoutWarnings({})).toEqual([
      'the table is not partitioned; the raw table is partitioned by DAY on received_at',
      'the table is not clustered; the raw table is clustered by topic',
    ]);
  });
});

describe('docs/bigquery.md', () => {
  it('holds the schema table generated from the definition', () => {
    const doc = readFileSync(new URL('../../../docs/bigquery.md', import.meta.url), 'utf8');
    const fresh = extractGenerated(doc) === renderSchemaTable();
    expect(fresh, 'the schema table in docs/bigquery.md is stale: run `npm run build && node bin/mqtt-ingest.js docs bigquery-schema --write docs/bigquery.md`').toBe(true);
  });
});
