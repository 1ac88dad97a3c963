import protobuf from 'protobufjs';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeSparkplug, SparkplugEdge } from '../../test/helpers/sparkplug-edge.js';
import { decodePayload, decodeState } from './payload.js';
import { PAYLOAD_TYPE } from './schema.js';
import { refusal as reason } from '../../test/helpers/sparkplug-refusal.js';


describe('decodePayload', () => {
  it('decodes a birth: timestamp, seq, names, aliases, datatypes and raw values, every 64-bit field exact', () => {
    const edge = new SparkplugEdge('plant', 'edge1', { clock: () => 1_700_000_000_123 });
    const p = decodePayload(edge.birth([{ name: 'Motor/Speed', datatype: 'Int32', value: -5 }]).payload);
    expect(p.timestamp).toBe(1_700_000_000_123n);
    expect(p.seq).toBe(0n);
    expect(p.metrics.map((m) => [m.name, m.alias, m.datatype])).toEqual([
      ['bdSeq', undefined, 4],
      ['Node Control/Rebirth', undefined, 11],
      ['Motor/Speed', 1n, 3],
    ]);
    expect(p.metrics[0]!.raw).toEqual({ field: 'longValue', value: 0n });
    expect(p.metrics[1]!.raw).toEqual({ field: 'booleanValue', value: false });
    // Sign-extended to 32 bits as Tahu's Java library sends it, kept as the uint32 that was sent.
    expect(p.metrics[2]!.raw).toEqual({ field: 'intValue', value: 2 ** 32 - 5 });
  });

  it('keeps uint64 fields beyond 2^53 exact: timestamp, seq, alias, metric timestamp, long_value, metadata size', () => {
    const big = 2n ** 63n + 1n;
    const p = decodePayload(
      encodeSparkplug({
        timestamp: 2n ** 64n - 1n,
        seq: 2n ** 53n + 1n,
        metrics: [{ alias: big, timestamp: big + 2n, datatype: 'UInt64', value: big, metadata: { size: 2n ** 60n + 3n, fileName: 'a.bin' } }],
      }),
    );
    expect(p.timestamp).toBe(2n ** 64n - 1n);
    expect(p.seq).toBe(2n ** 53n + 1n);
    const m = p.metrics[0]!;
    expect(m.alias).toBe(big);
    expect(m.timestamp).toBe(big + 2n);
    expect(m.raw).toEqual({ field: 'longValue', value: big });
    expect(m.metadata).toEqual({ size: (2n ** 60n + 3n).toString(), file_name: 'a.bin' });
  });

  describe('whether protobufjs has Long or not', () => {
    const Long = protobuf.util.Long;
    afterEach(() => {
      protobuf.util.Long = Long;
      protobuf.configure();
    });
    it('protobufjs alone gives a Long with `long`, a rounded number without; the decoder gives the same bigint either way', () => {
      const bytes = encodeSparkplug({ timestamp: 2n ** 53n + 1n, metrics: [{ alias: 1, datatype: 'Int64', value: -(2n ** 53n + 1n) }] });
      expect(Long).toBeTruthy(); // protobufjs 7 depends on `long`, so it is installed
      const plain = PAYLOAD_TYPE.decode(bytes) as unknown as { timestamp: unknown };
      expect(typeof plain.timestamp).toBe('object'); // a Long, not a bigint
      expect(decodePayload(bytes).timestamp).toBe(2n ** 53n + 1n);

      protobuf.util.Long = null as never; // as if `long` could not be required
      protobuf.configure();
      const lossy = PAYLOAD_TYPE.decode(bytes) as unknown as { timestamp: unknown };
      expect(lossy.timestamp).toBe(2 ** 53); // rounded
      const p = decodePayload(bytes);
      expect(p.timestamp).toBe(2n ** 53n + 1n);
      expect(p.metrics[0]!.raw).toEqual({ field: 'longValue', value: 2n ** 64n - (2n ** 53n + 1n) });
    });
  });

  it('keeps value fields as sent, reads flags, uuid, body, properties and metadata', () => {
    const p = decodePayload(
      encodeSparkplug({
        timestamp: 1,
        seq: 3,
        uuid: 'u-1',
        body: Buffer.from([1, 2, 3]),
        metrics: [
          { name: 'f', datatype: 'Float', value: 1.5, isHistorical: true },
          { name: 'd', datatype: 'Double', value: 0.1, isTransient: true },
          { name: 's', datatype: 'String', value: 'héllo' },
          { name: 'b', datatype: 'Bytes', value: Buffer.from([0, 255]) },
          { name: 'n', datatype: 'Int32', isNull: true, properties: { Quality: { type: 'Int32', value: 192 }, Engineering: { type: 'String', value: 'rpm' } } },
          { name: 'nothing', datatype: 'Int32' },
        ],
      }),
    );
    expect(p.uuid).toBe('u-1');
    expect(p.body).toEqual(Buffer.from([1, 2, 3]));
    expect(p.metrics.map((m) => m.raw)).toEqual([
      { field: 'floatValue', value: 1.5 },
      { field: 'doubleValue', value: 0.1 },
      { field: 'stringValue', value: 'héllo' },
      { field: 'bytesValue', value: Buffer.from([0, 255]) },
      { field: 'none' },
      { field: 'none' },
    ]);
    expect(p.metrics[0]!.isHistorical).toBe(true);
    expect(p.metrics[1]!.isTransient).toBe(true);
    expect(p.metrics[4]!.isNull).toBe(true);
    expect(p.metrics[4]!.properties).toEqual({ Quality: { type: 'Int32', value: 192 }, Engineering: { type: 'String', value: 'rpm' } });
  });

  it('decodes an NDEATH (bdSeq alone, no seq) and a DDEATH without metrics', () => {
    const edge = new SparkplugEdge('g', 'e');
    edge.reconnect();
    const death = decodePayload(edge.death().payload);
    expect(death.seq).toBeUndefined();
    expect(death.metrics).toHaveLength(1);
    expect(death.metrics[0]).toMatchObject({ name: 'bdSeq', datatype: 4, raw: { field: 'longValue', value: 1n } });
    const ddeath = decodePayload(edge.deviceDeath('d1').payload);
    expect(ddeath.metrics).toEqual([]);
    expect(ddeath.seq).toBe(0n);
  });

  it('refuses bytes that are not protobuf', () => {
    expect(reason(() => decodePayload(Buffer.from('{"temp": 21.5}')))).toMatch(/^not a protobuf message/);
    expect(reason(() => decodePayload(Buffer.from([0x08])))).toMatch(/truncated/);
    expect(reason(() => decodePayload(Buffer.from([0x12, 0x05, 0x0a])))).toMatch(/5 bytes has only 1 left/);
    expect(reason(() => decodePayload(Buffer.from([0x0f])))).toMatch(/wire type 7/);
  });

  it('refuses protobuf that is not a Sparkplug payload', () => {
    // A message of another schema: field 1 a string, field 2 a number.
    const other = protobuf.parse('syntax = "proto3"; message Reading { string sensor = 1; int32 value = 2; }').root.lookupType('Reading');
    const bytes = Buffer.from(other.encode({ sensor: 'temp', value: 21 }).finish());
    expect(reason(() => decodePayload(bytes))).toMatch(/^not a Sparkplug payload: Payload\.timestamp \(field 1\) has wire type 2, not 0/);
    // Known fields only, but a metric with neither name nor alias.
    expect(reason(() => decodePayload(encodeSparkplug({ timestamp: 1, metrics: [{ datatype: 'Int32', value: 1 }] })))).toMatch(/neither name nor alias/);
    // Only unknown fields, or nothing at all.
    expect(reason(() => decodePayload(Buffer.from([0x30, 0x01])))).toMatch(/none of its fields is a Sparkplug field/);
    expect(reason(() => decodePayload(Buffer.alloc(0)))).toBe('not a Sparkplug payload: empty');
    // Nesting deeper than any Sparkplug payload: Templates in Templates.
    let template: Buffer = Buffer.alloc(0);
    for (let i = 0; i < 100; i++) {
      const metric = Buffer.concat([Buffer.from([0x92, 0x01]), varint(template.length), template]); // Metric.template_value (18)
      template = Buffer.concat([Buffer.from([0x12]), varint(metric.length), metric]); // Template.metrics (2)
    }
    expect(reason(() => decodePayload(Buffer.concat([Buffer.from([0x08, 0x01]), template])))).toMatch(/nested deeper than/);
  });

  it('reads DataSet types packed as well as unpacked', () => {
    const dataSet = Buffer.from([0x08, 0x02, 0x12, 0x01, 0x61, 0x12, 0x01, 0x62, 0x1a, 0x02, 0x03, 0x0c]); // types [Int32, String], packed
    const metric = Buffer.concat([Buffer.from([0x0a, 0x01, 0x64, 0x20, 0x10, 0x8a, 0x01, dataSet.length]), dataSet]);
    const p = decodePayload(Buffer.concat([Buffer.from([0x08, 0x01, 0x12, metric.length]), metric]));
    expect(p.metrics[0]!.raw).toEqual({ field: 'datasetValue', value: { numOfColumns: 2n, columns: ['a', 'b'], types: [3, 12], rows: [] } });
  });

  it('skips unknown fields (extensions) as protobuf does', () => {
    const known = encodeSparkplug({ timestamp: 5, metrics: [{ name: 'a', datatype: 'Boolean', value: true }] });
    const p = decodePayload(Buffer.concat([known, Buffer.from([0x30, 0x07, 0x3a, 0x02, 0x61, 0x62])]));
    expect(p.timestamp).toBe(5n);
    expect(p.metrics[0]!.raw).toEqual({ field: 'booleanValue', value: true });
  });
});

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

describe('decodeState', () => {
  it('reads {"online", "timestamp"}', () => {
    expect(decodeState(Buffer.from('{"online":true,"timestamp":1700000000000}'))).toEqual({ online: true, timestamp: 1_700_000_000_000 });
    expect(decodeState(Buffer.from('{"timestamp": 5, "online": false}'))).toEqual({ online: false, timestamp: 5 });
    expect(decodeState(Buffer.from('\ufeff{"online": true}'))).toEqual({ online: true });
  });
  it('refuses anything else', () => {
    expect(reason(() => decodeState(Buffer.from('ONLINE')))).toBe('not a STATE payload: not JSON');
    expect(reason(() => decodeState(Buffer.from('[true]')))).toBe('not a STATE payload: not a JSON object');
    expect(reason(() => decodeState(Buffer.from('{"online":"true","timestamp":1}')))).toMatch(/"online" is not a boolean/);
    expect(reason(() => decodeState(Buffer.from('{"online":true,"timestamp":"1"}')))).toMatch(/"timestamp"/);
    expect(reason(() => decodeState(Buffer.from('{"online":true,"timestamp":1.5}')))).toMatch(/"timestamp"/);
    expect(reason(() => decodeState(Buffer.from([0x7b, 0xff, 0x7d])))).toBe('not a STATE payload: not UTF-8');
  });
});
