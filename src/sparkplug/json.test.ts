import { describe, expect, it } from 'vitest';
import { SparkplugEdge } from '../../test/helpers/sparkplug-edge.js';
import { stringifyJson } from '../core/json.js';
import { sparkplugAttributes, sparkplugJson } from './json.js';
import { decodePayload, decodeState } from './payload.js';
import { parseSparkplugTopic } from './topic.js';
import { SparkplugDecodeError } from './values.js';

describe('sparkplugJson', () => {
  it('a data message with names resolved through the births, 64-bit values as decimal strings', () => {
    const edge = new SparkplugEdge('plant', 'edge1', { clock: () => 1_700_000_000_000 });
    edge.birth([{ name: 'Speed', datatype: 'UInt64', value: 0n, properties: { Unit: { type: 'String', value: 'rpm' } } }]);
    const message = edge.data([{ name: 'Speed', value: 2n ** 63n + 1n, timestamp: 1_700_000_000_001 }, { name: 'Speed', isNull: true }]);
    const alias = edge.aliasOf('Speed')!;
    const out = sparkplugJson(parseSparkplugTopic(message.topic)!, decodePayload(message.payload), [{ name: 'Speed', datatype: 8 }, undefined]);
    expect(out).toEqual({
      message_type: 'NDATA',
      group_id: 'plant',
      edge_node_id: 'edge1',
      timestamp: '1700000000000',
      seq: '1',
      metrics: [
        { name: 'Speed', alias: String(alias), timestamp: '1700000000001', datatype: 'UInt64', value: '9223372036854775809', is_historical: false, is_transient: false, is_null: false },
        { name: null, alias: String(alias), datatype: null, value: null, is_historical: false, is_transient: false, is_null: true },
      ],
    });
    // Plain JSON: nothing in it needs more than JSON.stringify.
    expect(JSON.parse(JSON.stringify(out))).toEqual(out);
    expect(stringifyJson(out)).toBe(JSON.stringify(out));
  });

  it('a birth with properties and metadata, a device message, a death, a STATE', () => {
    const edge = new SparkplugEdge('plant', 'edge1', { clock: () => 5 });
    edge.birth([]);
    const dbirth = edge.deviceBirth('pump 1', [
      { name: 'Report', datatype: 'File', value: Buffer.from('a,b\n'), metadata: { fileName: 'report.csv', size: 4 }, properties: { Quality: { type: 'Int32', value: 192 } } },
    ]);
    const out = sparkplugJson(parseSparkplugTopic(dbirth.topic)!, decodePayload(dbirth.payload));
    expect(out).toMatchObject({ message_type: 'DBIRTH', device_id: 'pump 1', seq: '1' });
    expect((out.metrics as unknown[])[0]).toEqual({
      name: 'Report',
      alias: String(edge.aliasOf('Report', 'pump 1')),
      datatype: 'File',
      value: Buffer.from('a,b\n').toString('base64'),
      is_historical: false,
      is_transient: false,
      is_null: false,
      metadata: { size: '4', file_name: 'report.csv' },
      properties: { Quality: { type: 'Int32', value: 192 } },
    });
    const death = edge.death();
    expect(sparkplugJson(parseSparkplugTopic(death.topic)!, decodePayload(death.payload))).toEqual({
      message_type: 'NDEATH',
      group_id: 'plant',
      edge_node_id: 'edge1',
      metrics: [{ name: 'bdSeq', datatype: 'Int64', value: '0', is_historical: false, is_transient: false, is_null: false }],
    });
    const state = decodeState(Buffer.from('{"online":true,"timestamp":1700000000000}'));
    expect(sparkplugJson(parseSparkplugTopic('spBv1.0/STATE/scada')!, state)).toEqual({ message_type: 'STATE', host_id: 'scada', online: true, timestamp: '1700000000000' });
  });

  it('throws, naming the metric, for a value that cannot be its type', () => {
    const edge = new SparkplugEdge('g', 'e');
    edge.birth([{ name: 'Flag', datatype: 'Boolean', value: true }]);
    const message = edge.data([{ name: 'Flag', value: true }]);
    // The birth said Boolean; resolved as an Int8 instead, the boolean_value does not fit.
    expect(() => sparkplugJson(parseSparkplugTopic(message.topic)!, decodePayload(message.payload), [{ name: 'Flag', datatype: 1 }])).toThrow(
      new SparkplugDecodeError('metric "Flag": a Int8 cannot be sent in booleanValue'),
    );
  });
});

describe('sparkplugAttributes', () => {
  it('group, type, edge node and device, those the topic has', () => {
    expect(sparkplugAttributes(parseSparkplugTopic('spBv1.0/plant/DDATA/edge1/pump1')!)).toEqual({
      sparkplug_group: 'plant',
      sparkplug_type: 'DDATA',
      sparkplug_edge_node: 'edge1',
      sparkplug_device: 'pump1',
    });
    expect(sparkplugAttributes(parseSparkplugTopic('spBv1.0/plant/NBIRTH/edge1')!)).toEqual({ sparkplug_group: 'plant', sparkplug_type: 'NBIRTH', sparkplug_edge_node: 'edge1' });
    expect(sparkplugAttributes(parseSparkplugTopic('spBv1.0/STATE/scada')!)).toEqual({ sparkplug_type: 'STATE', sparkplug_edge_node: 'scada' });
  });
});
