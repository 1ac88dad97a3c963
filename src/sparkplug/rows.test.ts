import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBigQueryServer, type BigQueryServer } from '../../test/helpers/bigquery-server.js';
import { encodeSparkplug, SparkplugEdge, type BirthSpec } from '../../test/helpers/sparkplug-edge.js';
import type { BigQueryRow } from '../sinks/sink.js';
import { decodePayload, decodeState } from './payload.js';
import { SPARKPLUG_TABLE_FIELDS, sparkplugRows, sparkplugTableResource } from './rows.js';
import { parseSparkplugTopic } from './topic.js';
import type { BirthMetric, DecodedPayload, SparkplugTopic } from './types.js';
import { SparkplugDecodeError } from './values.js';

const RECEIVED = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
const T = 1_767_323_045_000; // 2026-01-02T03:04:05.000Z

function rowsOf(topic: string, payload: Buffer, births: (BirthMetric | undefined)[] = [], id = 'MSG') {
  const t = parseSparkplugTopic(topic)!;
  const decoded = t.type === 'STATE' ? undefined : decodePayload(payload);
  const state = t.type === 'STATE' ? decodeState(payload) : undefined;
  return sparkplugRows({ messageId: id, receivedAt: RECEIVED, topic }, t, decoded, state, births);
}

/** What a host resolves for a data message: each metric's birth by alias (a stand-in for the host's own resolution). */
function resolve(birth: DecodedPayload, data: DecodedPayload): (BirthMetric | undefined)[] {
  const byAlias = new Map(birth.metrics.filter((m) => m.alias !== undefined).map((m) => [m.alias!, { name: m.name!, datatype: m.datatype }]));
  return data.metrics.map((m) => (m.alias === undefined ? undefined : byAlias.get(m.alias)));
}

const NULL_VALUES = { int_value: null, float_value: null, bool_value: null, string_value: null, bytes_value: null, json_value: null };

const SPECS: BirthSpec[] = [
  { name: 'i8', datatype: 'Int8', value: -128 },
  { name: 'u16', datatype: 'UInt16', value: 65535 },
  { name: 'i64', datatype: 'Int64', value: -(2n ** 53n + 1n) },
  { name: 'u64', datatype: 'UInt64', value: 2n ** 63n + 1n },
  { name: 'when', datatype: 'DateTime', value: 1_700_000_000_000n },
  { name: 'f', datatype: 'Float', value: 1.23 },
  { name: 'nan', datatype: 'Double', value: NaN },
  { name: 'on', datatype: 'Boolean', value: true },
  { name: 'label', datatype: 'String', value: 'pump "A"' },
  { name: 'blob', datatype: 'Bytes', value: Buffer.from([0, 1, 2, 255]) },
  { name: 'levels', datatype: 'Int64Array', value: [1n, -(2n ** 63n)] },
  { name: 'table', datatype: 'DataSet', value: { columns: ['a', 'b'], types: ['UInt64', 'String'], rows: [[2n ** 64n - 1n, 'x']] } },
  { name: 'motor', datatype: 'Template', value: { templateRef: 'Motor', metrics: [{ name: 'rpm', datatype: 'Int32', value: 1500 }] } },
  { name: 'off', datatype: 'Int32', isNull: true },
];

describe('sparkplugRows', () => {
  it('a birth: one row per metric, each value in its one column, 64-bit values as decimal text', () => {
    const edge = new SparkplugEdge('plant', 'edge1', { clock: () => T });
    const rows = rowsOf('spBv1.0/plant/NBIRTH/edge1', edge.birth(SPECS).payload);
    expect(rows.map((r) => r.insertId)).toEqual(rows.map((_, i) => `MSG:${i}`));
    expect(rows[0]!.row).toEqual({
      message_id: 'MSG',
      received_at: '2026-01-02T03:04:05.678Z',
      topic: 'spBv1.0/plant/NBIRTH/edge1',
      group_id: 'plant',
      message_type: 'NBIRTH',
      edge_node_id: 'edge1',
      device_id: null,
      seq: '0',
      payload_timestamp: '2026-01-02T03:04:05.000Z',
      metric_name: 'bdSeq',
      metric_alias: null,
      datatype: 'Int64',
      metric_timestamp: null,
      is_historical: false,
      is_transient: false,
      is_null: false,
      ...NULL_VALUES,
      int_value: '0',
    });
    expect(Object.keys(rows[0]!.row)).toEqual(SPARKPLUG_TABLE_FIELDS.map((f) => f.name));
    const byName = Object.fromEntries(rows.map((r) => [r.row.metric_name, r.row]));
    const value = (name: string) => {
      const row = byName[name]!;
      const set = Object.entries(row).filter(([k, v]) => k in NULL_VALUES && v !== null);
      expect(set.length, name).toBeLessThanOrEqual(1);
      return Object.fromEntries(set);
    };
    expect(byName['Node Control/Rebirth']).toMatchObject({ datatype: 'Boolean', bool_value: false });
    expect(value('i8')).toEqual({ int_value: '-128' });
    expect(value('u16')).toEqual({ int_value: '65535' });
    expect(value('i64')).toEqual({ int_value: '-9007199254740993' });
    expect(value('u64')).toEqual({ int_value: '9223372036854775809' });
    expect(value('when')).toEqual({ int_value: '1700000000000' });
    expect(value('f')).toEqual({ float_value: 1.23 });
    expect(value('nan')).toEqual({ string_value: 'NaN' });
    expect(value('on')).toEqual({ bool_value: true });
    expect(value('label')).toEqual({ string_value: 'pump "A"' });
    expect(value('blob')).toEqual({ bytes_value: 'AAEC/w==' });
    expect(value('levels')).toEqual({ json_value: '["1","-9223372036854775808"]' });
    expect(value('table')).toEqual({ json_value: '{"columns":["a","b"],"types":["UInt64","String"],"rows":[["18446744073709551615","x"]]}' });
    expect(JSON.parse(value('motor').json_value as string)).toMatchObject({ template_ref: 'Motor', metrics: [{ name: 'rpm', datatype: 'Int32', value: 1500 }] });
    expect(value('off')).toEqual({});
    expect(byName.off).toMatchObject({ is_null: true, datatype: 'Int32' });
    expect(byName.i8).toMatchObject({ metric_alias: String(edge.aliasOf('i8')) });
  });

  it('data by alias: names and datatypes from the birth; an alias no birth resolved keeps its alias and goes by its raw field', () => {
    const edge = new SparkplugEdge('plant', 'edge1', { clock: () => T });
    const birth = decodePayload(edge.birth(SPECS).payload);
    const message = edge.data([
      { name: 'i64', value: -(2n ** 53n + 1n), timestamp: T + 1 },
      { name: 'f', value: -0.5 },
      { name: 'levels', value: [7n] },
    ]);
    const data = decodePayload(message.payload);
    expect(data.metrics.every((m) => m.name === undefined && m.datatype === 0)).toBe(true);
    const resolved = rowsOf(message.topic, message.payload, resolve(birth, data));
    expect(resolved.map((r) => [r.row.metric_name, r.row.datatype, r.row.int_value ?? r.row.float_value ?? r.row.json_value])).toEqual([
      ['i64', 'Int64', '-9007199254740993'],
      ['f', 'Float', -0.5],
      ['levels', 'Int64Array', '["7"]'],
    ]);
    expect(resolved[0]!.row).toMatchObject({ seq: '1', message_type: 'NDATA', metric_timestamp: '2026-01-02T03:04:05.001Z' });

    const unresolved = rowsOf(message.topic, message.payload, []);
    expect(unresolved.map((r) => [r.row.metric_name, r.row.metric_alias, r.row.datatype, r.row.int_value ?? r.row.float_value ?? r.row.bytes_value])).toEqual([
      [null, String(edge.aliasOf('i64')), null, String(2n ** 64n - (2n ** 53n + 1n))], // unsigned: its type is unknown
      [null, String(edge.aliasOf('f')), null, -0.5],
      [null, String(edge.aliasOf('levels')), null, Buffer.from([7, 0, 0, 0, 0, 0, 0, 0]).toString('base64')],
    ]);
  });

  it('a device birth and data, a death with bdSeq alone, a device death without metrics, a STATE', () => {
    const edge = new SparkplugEdge('plant', 'edge1', { clock: () => T });
    edge.birth([]);
    const dbirth = edge.deviceBirth('pump1', [{ name: 'rpm', datatype: 'UInt32', value: 2 ** 32 - 1 }]);
    const [d] = rowsOf(dbirth.topic, dbirth.payload);
    expect(d!.row).toMatchObject({ message_type: 'DBIRTH', device_id: 'pump1', metric_name: 'rpm', datatype: 'UInt32', int_value: '4294967295' });

    edge.reconnect();
    const death = rowsOf(edge.death().topic, edge.death().payload);
    expect(death).toHaveLength(1);
    expect(death[0]!.row).toMatchObject({ message_type: 'NDEATH', seq: null, payload_timestamp: null, metric_name: 'bdSeq', datatype: 'Int64', int_value: '1' });

    const ddeath = edge.deviceDeath('pump1');
    const [dd] = rowsOf(ddeath.topic, ddeath.payload, [], 'DD');
    expect(dd).toEqual({
      insertId: 'DD:0',
      row: {
        message_id: 'DD',
        received_at: '2026-01-02T03:04:05.678Z',
        topic: 'spBv1.0/plant/DDEATH/edge1/pump1',
        group_id: 'plant',
        message_type: 'DDEATH',
        edge_node_id: 'edge1',
        device_id: 'pump1',
        seq: '2',
        payload_timestamp: '2026-01-02T03:04:05.000Z',
        metric_name: null,
        metric_alias: null,
        datatype: null,
        metric_timestamp: null,
        is_historical: null,
        is_transient: null,
        is_null: null,
        ...NULL_VALUES,
      },
    });

    const state = rowsOf('spBv1.0/STATE/scada', Buffer.from(JSON.stringify({ online: true, timestamp: T })), [], 'ST');
    expect(state).toHaveLength(1);
    expect(state[0]!.row).toMatchObject({
      message_type: 'STATE',
      group_id: null,
      edge_node_id: 'scada',
      device_id: null,
      seq: null,
      payload_timestamp: '2026-01-02T03:04:05.000Z',
      metric_name: null,
      ...NULL_VALUES,
      bool_value: true,
    });
  });

  it('a timestamp beyond BigQuery\'s range is NULL; a value that cannot be its type throws, naming the metric', () => {
    const rows = rowsOf('spBv1.0/g/NDATA/e', encodeSparkplug({ timestamp: 2n ** 63n, seq: 2n ** 64n - 1n, metrics: [{ name: 'x', timestamp: 253_402_300_800_000, datatype: 'Int32', value: 1 }] }));
    expect(rows[0]!.row).toMatchObject({ payload_timestamp: null, metric_timestamp: null, seq: null, int_value: '1' });
    const bad = encodeSparkplug({ timestamp: 1, metrics: [{ alias: 9, raw: { field: 'stringValue', value: 'x' } }] });
    expect(() => rowsOf('spBv1.0/g/NDATA/e', bad, [{ name: 'Speed', datatype: 3 }])).toThrow(new SparkplugDecodeError('metric "Speed": a Int32 cannot be sent in stringValue'));
  });
});

describe('the Sparkplug table in the local BigQuery server', () => {
  let server: BigQueryServer;
  beforeAll(async () => {
    server = await startBigQueryServer();
    server.createDataset('telemetry');
  });
  afterAll(async () => {
    await server.stop();
  });

  const api = async (path: string, body: unknown) => {
    const res = await fetch(`${server.url}/bigquery/v2/projects/${server.projectId}/datasets/telemetry${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  it('creates the table with its partitioning and clustering, and takes the rows of every kind of message', async () => {
    const created = await api('/tables', { tableReference: { tableId: 'sparkplug' }, ...sparkplugTableResource('plant') });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const table = server.tables.get('telemetry.sparkplug')!.resource;
    expect(table.timePartitioning).toEqual({ type: 'DAY', field: 'received_at' });
    expect(table.clustering).toEqual({ fields: ['edge_node_id', 'device_id', 'metric_name'] });
    expect(table.schema.fields.find((f) => f.name === 'metric_alias')).toMatchObject({ type: 'NUMERIC', mode: 'NULLABLE' });

    const edge = new SparkplugEdge('plant', 'edge1', { clock: () => T });
    const nbirth = edge.birth(SPECS);
    const birth = decodePayload(nbirth.payload);
    const ndata = edge.data([{ name: 'u64', value: 2n ** 64n - 1n }, { name: 'table', value: { columns: ['a'], types: ['Int8'], rows: [[-1]] } }, { name: 'blob', value: Buffer.from('hi') }]);
    const dbirth = edge.deviceBirth('pump1', [{ name: 'on', datatype: 'Boolean', value: false }]);
    const ddeath = edge.deviceDeath('pump1');
    const ndeath = edge.death();
    const rows: { insertId: string; row: BigQueryRow }[] = [
      ...rowsOf(nbirth.topic, nbirth.payload, [], 'A'),
      ...rowsOf(ndata.topic, ndata.payload, resolve(birth, decodePayload(ndata.payload)), 'B'),
      ...rowsOf(ndata.topic, ndata.payload, [], 'C'),
      ...rowsOf(dbirth.topic, dbirth.payload, [], 'D'),
      ...rowsOf(ddeath.topic, ddeath.payload, [], 'E'),
      ...rowsOf(ndeath.topic, ndeath.payload, [], 'F'),
      ...rowsOf('spBv1.0/STATE/scada', Buffer.from('{"online":false,"timestamp":1}'), [], 'G'),
    ];
    const inserted = await api('/tables/sparkplug/insertAll', { rows: rows.map((r) => ({ insertId: r.insertId, json: r.row })) });
    expect(inserted.status).toBe(200);
    expect(inserted.json.insertErrors, JSON.stringify(inserted.json.insertErrors)).toBeUndefined();
    const stored = server.rows('telemetry', 'sparkplug');
    expect(stored).toHaveLength(rows.length);
    expect(stored.find((r) => r.insertId === 'B:0')!.json).toMatchObject({ metric_name: 'u64', int_value: '18446744073709551615' });
    expect(stored.find((r) => r.insertId === 'G:0')!.json).toMatchObject({ message_type: 'STATE', edge_node_id: 'scada', bool_value: false, payload_timestamp: '1970-01-01T00:00:00.001Z' });

    // The server's checks are real: a JSON cell sent as an object, or bytes not in base64, are refused.
    const refused = await api('/tables/sparkplug/insertAll', {
      rows: [
        { insertId: 'X:0', json: { ...rows[0]!.row, json_value: { a: 1 } } },
        { insertId: 'X:1', json: { ...rows[0]!.row, bytes_value: 'not base64!' } },
      ],
    });
    expect((refused.json.insertErrors as unknown[]).length).toBe(2);
  });
});
