import { describe, expect, it } from 'vitest';
import { encodeSparkplug, packArray, typeNumber, type EdgeMetric, type EdgeValue } from '../../test/helpers/sparkplug-edge.js';
import { decodePayload } from './payload.js';
import type { MetricValue } from './types.js';
import { metricValue, valueJson } from './values.js';
import { refusal } from '../../test/helpers/sparkplug-refusal.js';

/** Encodes one metric as an edge node would, decodes it, and converts its value by `datatype` (default: its own). */
function roundTrip(metric: EdgeMetric, opts: { uint32In?: 'int' | 'long'; datatype?: number } = {}): MetricValue {
  const m = decodePayload(encodeSparkplug({ timestamp: 1, metrics: [{ name: 'm', ...metric }] }, opts)).metrics[0]!;
  return metricValue(m.raw, opts.datatype ?? m.datatype, m.isNull, JSON.stringify(m.name));
}
const json = (datatype: string, value: EdgeValue): unknown => {
  const m = decodePayload(encodeSparkplug({ timestamp: 1, metrics: [{ name: 'm', datatype, value }] })).metrics[0]!;
  return valueJson(m.raw, m.datatype, m.isNull, 'metric "m"');
};

describe('metricValue: every scalar type round-trips exactly', () => {
  const ints: [string, bigint[]][] = [
    ['Int8', [-128n, -1n, 0n, 127n]],
    ['Int16', [-32768n, -1n, 32767n]],
    ['Int32', [-(2n ** 31n), -1n, 2n ** 31n - 1n]],
    ['Int64', [-(2n ** 63n), -(2n ** 53n + 1n), -1n, 2n ** 53n + 1n, 2n ** 63n - 1n]],
    ['UInt8', [0n, 255n]],
    ['UInt16', [0n, 65535n]],
    ['UInt32', [0n, 2n ** 32n - 1n]],
    ['UInt64', [0n, 2n ** 53n + 1n, 2n ** 63n + 1n, 2n ** 64n - 1n]],
    ['DateTime', [0n, 1_700_000_000_123n, -86_400_000n]],
  ];
  for (const [type, values] of ints) {
    it(`${type}: ${values.join(', ')}`, () => {
      for (const v of values) expect(roundTrip({ datatype: type, value: v })).toEqual({ kind: 'int', value: v });
    });
  }
  it('UInt32 also from long_value, as Eclipse Tahu sends it', () => {
    expect(roundTrip({ datatype: 'UInt32', value: 2n ** 32n - 1n }, { uint32In: 'long' })).toEqual({ kind: 'int', value: 2n ** 32n - 1n });
  });
  it('Int8/16 also from their low bits alone (not sign-extended)', () => {
    expect(roundTrip({ datatype: 'Int8', raw: { field: 'intValue', value: 0x80 } })).toEqual({ kind: 'int', value: -128n });
    expect(roundTrip({ datatype: 'Int16', raw: { field: 'intValue', value: 0xffff } })).toEqual({ kind: 'int', value: -1n });
    expect(roundTrip({ datatype: 'Int8', raw: { field: 'longValue', value: 2n ** 64n - 2n } })).toEqual({ kind: 'int', value: -2n });
  });
  it('Float as the shortest decimal of its 32 bits, Double exactly', () => {
    expect(roundTrip({ datatype: 'Float', value: 1.23 })).toEqual({ kind: 'float', value: 1.23 });
    expect(roundTrip({ datatype: 'Float', value: -3.4028234663852886e38 })).toEqual({ kind: 'float', value: -3.4028235e38 });
    expect(roundTrip({ datatype: 'Float', value: 1.401298464324817e-45 })).toEqual({ kind: 'float', value: 1e-45 });
    expect(Math.fround(1e-45)).toBe(1.401298464324817e-45);
    expect(roundTrip({ datatype: 'Float', value: NaN })).toEqual({ kind: 'float', value: NaN });
    expect(roundTrip({ datatype: 'Double', value: 0.1 + 0.2 })).toEqual({ kind: 'float', value: 0.30000000000000004 });
    expect(roundTrip({ datatype: 'Double', value: -Infinity })).toEqual({ kind: 'float', value: -Infinity });
  });
  it('Boolean, String, Text, UUID, Bytes, File', () => {
    expect(roundTrip({ datatype: 'Boolean', value: true })).toEqual({ kind: 'bool', value: true });
    expect(roundTrip({ datatype: 'String', value: 'ü€😀' })).toEqual({ kind: 'string', value: 'ü€😀' });
    expect(roundTrip({ datatype: 'Text', value: 'long text' })).toEqual({ kind: 'string', value: 'long text' });
    expect(roundTrip({ datatype: 'UUID', value: '123e4567-e89b-12d3-a456-426614174000' })).toEqual({ kind: 'string', value: '123e4567-e89b-12d3-a456-426614174000' });
    expect(roundTrip({ datatype: 'Bytes', value: Buffer.from([0, 1, 254, 255]) })).toEqual({ kind: 'bytes', value: Buffer.from([0, 1, 254, 255]) });
    expect(roundTrip({ datatype: 'File', value: Buffer.from('file body'), metadata: { fileName: 'report.csv' } })).toEqual({ kind: 'bytes', value: Buffer.from('file body') });
  });
  it('null when is_null is set or no value was sent, whatever the type', () => {
    expect(roundTrip({ datatype: 'Int64', isNull: true })).toEqual({ kind: 'null' });
    expect(roundTrip({ datatype: 'DataSet' })).toEqual({ kind: 'null' });
  });
  it('with no datatype known, by the raw field: integers unsigned', () => {
    expect(roundTrip({ raw: { field: 'intValue', value: 2 ** 32 - 1 } }, { datatype: 0 })).toEqual({ kind: 'int', value: 2n ** 32n - 1n });
    expect(roundTrip({ raw: { field: 'longValue', value: 2n ** 64n - 1n } }, { datatype: 0 })).toEqual({ kind: 'int', value: 2n ** 64n - 1n });
    expect(roundTrip({ raw: { field: 'doubleValue', value: 2.5 } }, { datatype: 0 })).toEqual({ kind: 'float', value: 2.5 });
    expect(roundTrip({ raw: { field: 'stringValue', value: 'x' } }, { datatype: 0 })).toEqual({ kind: 'string', value: 'x' });
  });
  it('the birth datatype applies to data that does not repeat it', () => {
    expect(roundTrip({ datatype: 'Int16', sendDatatype: false, value: -2 }, { datatype: typeNumber('Int16') })).toEqual({ kind: 'int', value: -2n });
  });
});

describe('metricValue: refusals name the metric', () => {
  it('a value in the wrong field, or beyond its type', () => {
    expect(refusal(() => roundTrip({ datatype: 'Int32', raw: { field: 'stringValue', value: '5' } }))).toBe('metric "m": a Int32 cannot be sent in stringValue');
    expect(refusal(() => roundTrip({ datatype: 'Int64', raw: { field: 'intValue', value: 5 } }))).toMatch(/Int64 cannot be sent in intValue/);
    expect(refusal(() => roundTrip({ datatype: 'Float', raw: { field: 'doubleValue', value: 5 } }))).toMatch(/Float cannot be sent in doubleValue/);
    expect(refusal(() => roundTrip({ datatype: 'UInt8', raw: { field: 'intValue', value: 256 } }))).toBe('metric "m": 256 (in intValue) is not a UInt8');
    expect(refusal(() => roundTrip({ datatype: 'Int8', raw: { field: 'intValue', value: 0x1ff } }))).toMatch(/511 \(in intValue\) is not an Int8/);
    expect(refusal(() => roundTrip({ datatype: 'Int8', raw: { field: 'intValue', value: 0xffffff7f } }))).toMatch(/is not an Int8/);
    expect(refusal(() => roundTrip({ datatype: 'UInt32', raw: { field: 'longValue', value: 2n ** 32n } }))).toMatch(/is not a UInt32/);
    expect(refusal(() => roundTrip({ datatype: 40, raw: { field: 'intValue', value: 1 } }))).toMatch(/datatype 40 cannot be a metric's value/);
  });
  it('a truncated or malformed array', () => {
    expect(refusal(() => roundTrip({ datatype: 'Int32Array', raw: { field: 'bytesValue', value: Buffer.alloc(7) } }))).toBe(
      'metric "m": a Int32Array of 7 bytes, not a whole number of 4-byte elements',
    );
    expect(refusal(() => roundTrip({ datatype: 'BooleanArray', raw: { field: 'bytesValue', value: Buffer.from([9, 0, 0, 0, 0xff]) } }))).toMatch(/9 values takes 6 bytes, not 5/);
    expect(refusal(() => roundTrip({ datatype: 'BooleanArray', raw: { field: 'bytesValue', value: Buffer.from([1, 0]) } }))).toMatch(/no 4-byte count/);
    expect(refusal(() => roundTrip({ datatype: 'StringArray', raw: { field: 'bytesValue', value: Buffer.from('ab\0cd') } }))).toMatch(/no terminating null/);
    expect(refusal(() => roundTrip({ datatype: 'DoubleArray', raw: { field: 'stringValue', value: '1' } }))).toMatch(/DoubleArray cannot be sent in stringValue/);
  });
});

describe('array types (Sparkplug 3.0 §6.4.17)', () => {
  it("packs as the specification's examples show (little-endian; BooleanArray count, then bits from the most significant)", () => {
    const hex = (type: string, items: (number | bigint | boolean | string)[]) => packArray(typeNumber(type), items).toString('hex');
    expect(hex('Int16Array', [-30000, 30000])).toBe('d08a3075');
    expect(hex('Int32Array', [123456789, 987654321])).toBe('15cd5b07b168de3a');
    expect(hex('Int32Array', [-1, 315338746])).toBe('fffffffffaafcb12');
    expect(hex('Int64Array', [-4270929666821191986n, -3601064768563266876n])).toBe('ce0672ac189cbac4c4ba9c18ac7206ce');
    expect(hex('UInt8Array', [23, 250])).toBe('17fa');
    expect(hex('UInt16Array', [30, 52360])).toBe('1e0088cc');
    expect(hex('UInt32Array', [52, 3293969225])).toBe('3400000049fb55c4');
    expect(hex('UInt64Array', [52n, 16444743074749521625n])).toBe('3400000000000000d99e02d1b27637e4');
    expect(hex('StringArray', ['ABC', 'hello'])).toBe('41424300' + '68656c6c6f00');
    const bits = [false, false, true, true, false, true, false, false, true, true, false, true];
    expect(hex('BooleanArray', bits)).toBe('0c00000034d0');
    expect(hex('DateTimeArray', [1256102875335n])).toBe('c7d0907524010000');
  });
  it('decodes every array type to JSON, 64-bit elements as decimal strings', () => {
    expect(json('Int8Array', [-128, -23, 0, 127])).toEqual([-128, -23, 0, 127]);
    expect(json('Int16Array', [-32768, 32767])).toEqual([-32768, 32767]);
    expect(json('Int32Array', [-(2 ** 31), 2 ** 31 - 1])).toEqual([-(2 ** 31), 2 ** 31 - 1]);
    expect(json('Int64Array', [-(2n ** 63n), -(2n ** 53n + 1n), 2n ** 63n - 1n])).toEqual(['-9223372036854775808', '-9007199254740993', '9223372036854775807']);
    expect(json('UInt8Array', [0, 255])).toEqual([0, 255]);
    expect(json('UInt16Array', [0, 65535])).toEqual([0, 65535]);
    expect(json('UInt32Array', [0, 2 ** 32 - 1])).toEqual([0, 4294967295]);
    expect(json('UInt64Array', [0n, 2n ** 63n + 1n, 2n ** 64n - 1n])).toEqual(['0', '9223372036854775809', '18446744073709551615']);
    expect(json('FloatArray', [1.23, 89.341, -0.5, Infinity])).toEqual([1.23, 89.341, -0.5, 'Infinity']);
    expect(json('DoubleArray', [12.354213, 1022.9123213, NaN])).toEqual([12.354213, 1022.9123213, 'NaN']);
    const bits = [false, false, true, true, false, true, false, false, true, true, false, true];
    expect(json('BooleanArray', bits)).toEqual(bits);
    expect(json('BooleanArray', [])).toEqual([]);
    expect(json('StringArray', ['ABC', '', 'héllo'])).toEqual(['ABC', '', 'héllo']);
    expect(json('StringArray', [])).toEqual([]);
    expect(json('DateTimeArray', [1256102875335n, 1656107875000n])).toEqual(['1256102875335', '1656107875000']);
  });
  it('reads the bits of a BooleanArray from the most significant bit, the count little-endian', () => {
    const m = decodePayload(encodeSparkplug({ timestamp: 1, metrics: [{ name: 'b', datatype: 'BooleanArray', raw: { field: 'bytesValue', value: Buffer.from([3, 0, 0, 0, 0b1010_0000]) } }] })).metrics[0]!;
    expect(valueJson(m.raw, m.datatype, false, 'b')).toEqual([true, false, true]);
  });
});

describe('DataSet, Template, PropertySet', () => {
  const columns = ['i8', 'i16', 'i32', 'i64', 'u8', 'u16', 'u32', 'u64', 'f', 'd', 'b', 's', 'dt', 't'];
  const types = ['Int8', 'Int16', 'Int32', 'Int64', 'UInt8', 'UInt16', 'UInt32', 'UInt64', 'Float', 'Double', 'Boolean', 'String', 'DateTime', 'Text'];
  it('a DataSet of every column type, 64-bit cells as decimal strings, an empty cell as null', () => {
    const rows: (EdgeValue | null)[][] = [
      [-128, -32768, -(2 ** 31), -(2n ** 53n + 1n), 255, 65535, 2 ** 32 - 1, 2n ** 63n + 1n, 1.23, 0.1, true, 'a', 1_700_000_000_000n, 'text'],
      [127, 32767, 2 ** 31 - 1, 2n ** 63n - 1n, 0, 0, 0, 0n, -0.5, -1e300, false, '', 0n, null],
    ];
    for (const uint32In of ['int', 'long'] as const) {
      const m = decodePayload(encodeSparkplug({ timestamp: 1, metrics: [{ name: 'ds', datatype: 'DataSet', value: { columns, types, rows } }] }, { uint32In })).metrics[0]!;
      expect(metricValue(m.raw, m.datatype, false)).toEqual({
        kind: 'json',
        value: {
          columns,
          types,
          rows: [
            [-128, -32768, -(2 ** 31), '-9007199254740993', 255, 65535, 4294967295, '9223372036854775809', 1.23, 0.1, true, 'a', '1700000000000', 'text'],
            [127, 32767, 2 ** 31 - 1, '9223372036854775807', 0, 0, 0, '0', -0.5, -1e300, false, '', '0', null],
          ],
        },
      });
    }
  });
  it('refuses a DataSet whose rows or types do not fit its columns', () => {
    const bad = (value: EdgeValue) => refusal(() => roundTrip({ datatype: 'DataSet', value }));
    expect(bad({ columns: ['a', 'b'], types: ['Int32'], rows: [] })).toMatch(/2 columns and 1 types/);
    expect(bad({ columns: ['a'], types: ['Int32'], rows: [[1, { field: 'intValue', value: 2 }]] })).toMatch(/row 0 has 2 values for 1 columns/);
    expect(bad({ columns: ['a'], types: ['Bytes'], rows: [] })).toMatch(/column cannot be of type Bytes/);
    expect(bad({ columns: ['a'], types: ['Int32'], rows: [[1]], numOfColumns: 2 })).toMatch(/says num_of_columns 2/);
    expect(refusal(() => roundTrip({ datatype: 'DataSet', value: { columns: ['a'], types: ['Int64'], rows: [[{ field: 'stringValue', value: 'x' }]] } }))).toMatch(
      /metric "m", DataSet row 0 column "a": a Int64 cannot be sent in stringValue/,
    );
  });
  it('a Template definition and an instance: members converted by their datatypes, parameters, version, template_ref', () => {
    const definition = {
      version: '1.0',
      isDefinition: true,
      metrics: [
        { name: 'Speed', datatype: 'Int64', value: -(2n ** 53n + 1n) },
        { name: 'Inner', datatype: 'Template', value: { templateRef: 'Sub', metrics: [{ name: 'On', datatype: 'Boolean', value: true }] } },
        { name: 'Levels', datatype: 'UInt16Array', value: [1, 65535] },
      ],
      parameters: [
        { name: 'Rated', type: 'UInt64', value: 2n ** 63n + 1n },
        { name: 'Unit', type: 'String', value: 'rpm' },
      ],
    };
    expect(json('Template', definition)).toEqual({
      version: '1.0',
      is_definition: true,
      metrics: [
        { name: 'Speed', datatype: 'Int64', value: '-9007199254740993', is_historical: false, is_transient: false, is_null: false },
        {
          name: 'Inner',
          datatype: 'Template',
          value: { template_ref: 'Sub', is_definition: false, metrics: [{ name: 'On', datatype: 'Boolean', value: true, is_historical: false, is_transient: false, is_null: false }], parameters: [] },
          is_historical: false,
          is_transient: false,
          is_null: false,
        },
        { name: 'Levels', datatype: 'UInt16Array', value: [1, 65535], is_historical: false, is_transient: false, is_null: false },
      ],
      parameters: [
        { name: 'Rated', type: 'UInt64', value: '9223372036854775809' },
        { name: 'Unit', type: 'String', value: 'rpm' },
      ],
    });
    expect(json('Template', { templateRef: 'Motor', metrics: [{ name: 'Speed', datatype: 'Int64', value: 5n }] })).toMatchObject({ template_ref: 'Motor', is_definition: false });
    expect(refusal(() => roundTrip({ datatype: 'Template', value: { metrics: [{ name: 'Speed', datatype: 'Int8', raw: { field: 'stringValue', value: 'x' } }] } }))).toBe(
      'metric "m", member "Speed": a Int8 cannot be sent in stringValue',
    );
  });
  it('a PropertySet of every kind of property, nested sets and lists, null values, a key named __proto__', () => {
    const m = decodePayload(
      encodeSparkplug({
        timestamp: 1,
        metrics: [
          {
            name: 'p',
            datatype: 'Int32',
            value: 1,
            properties: {
              Quality: { type: 'Int32', value: 192 },
              Big: { type: 'UInt64', value: 2n ** 64n - 1n },
              Low: { type: 'Int8', value: -3 },
              Ratio: { type: 'Float', value: 0.1 },
              Unit: { type: 'String', value: 'rpm' },
              Off: { type: 'Boolean', isNull: true },
              Nested: { type: 'PropertySet', value: { Deep: { type: 'Double', value: 2.5 } } },
              List: { type: 'PropertySetList', value: [{ A: { type: 'Int16', value: -1 } }, {}] },
              ['__proto__']: { type: 'String', value: 'data' },
            },
          },
        ],
      }),
    ).metrics[0]!;
    const props = m.properties as Record<string, unknown>;
    expect(Object.getPrototypeOf(props)).toBe(Object.prototype);
    expect(Object.hasOwn(props, '__proto__')).toBe(true);
    expect(props).toEqual({
      Quality: { type: 'Int32', value: 192 },
      Big: { type: 'UInt64', value: '18446744073709551615' },
      Low: { type: 'Int8', value: -3 },
      Ratio: { type: 'Float', value: 0.1 },
      Unit: { type: 'String', value: 'rpm' },
      Off: { type: 'Boolean', value: null },
      Nested: { type: 'PropertySet', value: { Deep: { type: 'Double', value: 2.5 } } },
      List: { type: 'PropertySetList', value: [{ A: { type: 'Int16', value: -1 } }, {}] },
      ['__proto__']: { type: 'String', value: 'data' },
    });
  });
  it('refuses a property that cannot be its type, naming metric and property', () => {
    expect(
      refusal(() => decodePayload(encodeSparkplug({ timestamp: 1, metrics: [{ name: 'p', properties: { Q: { type: 'Int32', raw: { field: 'stringValue', value: 'x' } } } }] }))),
    ).toBe('metric "p", property "Q": a Int32 cannot be sent in stringValue');
  });
});
