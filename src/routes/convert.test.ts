import { describe, expect, it } from 'vitest';
import { attributeText, bigqueryCell, convert, quoteValue, type Typed } from './convert.js';
import { decimalInteger, parseJson, stringifyJson } from '../core/json.js';

const ok = (c: ReturnType<typeof convert>): Typed => {
  if (!c.ok) throw new Error(`refused: ${c.why}`);
  return c.typed;
};
const why = (c: ReturnType<typeof convert>): string => {
  if (c.ok) throw new Error(`converted to ${String(c.typed.value)}`);
  return c.why;
};

describe('lossless JSON', () => {
  it('keeps integers beyond 2^53 exactly and parses the rest as JSON.parse does', () => {
    const v = parseJson('{"a": 9007199254740993, "b": -9223372036854775808, "c": 1.5, "d": [1, "x", null, true], "e": 1e18}') as Record<string, unknown>;
    expect(v.a).toBe(9007199254740993n);
    expect(v.b).toBe(-9223372036854775808n);
    expect(v.c).toBe(1.5);
    expect(v.d).toEqual([1, 'x', null, true]);
    expect(v.e).toBe(10n ** 18n);
    expect(stringifyJson(v as never)).toBe('{"a":9007199254740993,"b":-9223372036854775808,"c":1.5,"d":[1,"x",null,true],"e":1000000000000000000}');
  });
  it('refuses what JSON.parse refuses, and keeps __proto__ as data', () => {
    expect(() => parseJson('{"a":')).toThrow(SyntaxError);
    expect(() => parseJson('abc')).toThrow(SyntaxError);
    const v = parseJson('{"__proto__": {"x": 12345678901234567890}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(Object.hasOwn(v, '__proto__')).toBe(true);
  });
  it('reads the integer a decimal text denotes, or none when it has a fraction', () => {
    expect(decimalInteger('12e3')).toBe(12000n);
    expect(decimalInteger('5.000')).toBe(5n);
    expect(decimalInteger('1.5e1')).toBe(15n);
    expect(decimalInteger('1.25e1')).toBeUndefined();
    expect(decimalInteger('-0.5')).toBeUndefined();
  });
});

describe('int (INT64)', () => {
  it('takes whole numbers, integer text and big integers exactly', () => {
    expect(ok(convert('int', 42))).toEqual({ type: 'int', value: 42n });
    expect(ok(convert('int', ' -7 '))).toEqual({ type: 'int', value: -7n });
    const big = ok(convert('int', parseJson('9223372036854775807')));
    expect(bigqueryCell(big)).toBe('9223372036854775807');
    expect(bigqueryCell(ok(convert('int', 12)))).toBe(12);
    expect(attributeText(big)).toBe('9223372036854775807');
  });
  it('refuses fractions, text, booleans, objects and values beyond INT64', () => {
    expect(why(convert('int', 1.5))).toMatch(/not a whole number/);
    expect(why(convert('int', 'abc'))).toMatch(/not a whole number/);
    expect(why(convert('int', true))).toMatch(/a boolean, not a whole number/);
    expect(why(convert('int', { a: 1 }))).toMatch(/an object/);
    expect(why(convert('int', parseJson('9223372036854775808')))).toMatch(/INT64 range/);
    expect(why(convert('int', 1e300))).toMatch(/exactly/);
  });
});

describe('float (FLOAT64)', () => {
  it('takes numbers and decimal text', () => {
    expect(ok(convert('float', 1.5)).value).toBe(1.5);
    expect(ok(convert('float', '2.5e3')).value).toBe(2500);
    expect(ok(convert('float', parseJson('9007199254740993'))).value).toBe(9007199254740992);
  });
  it('refuses text that is no number, booleans, and infinities', () => {
    expect(why(convert('float', 'abc'))).toBe('is not a number');
    expect(why(convert('float', '1.2.3'))).toBe('is not a number');
    expect(why(convert('float', false))).toMatch(/boolean/);
    expect(why(convert('float', parseJson('1e400')))).toMatch(/FLOAT64 range/);
  });
});

describe('bool', () => {
  it('takes booleans, true/false text in any case, and 1/0', () => {
    expect(ok(convert('bool', true)).value).toBe(true);
    expect(ok(convert('bool', 'FALSE')).value).toBe(false);
    expect(ok(convert('bool', 1)).value).toBe(true);
    expect(ok(convert('bool', '0')).value).toBe(false);
  });
  it('refuses anything else', () => {
    expect(why(convert('bool', 'yes'))).toMatch(/not a boolean/);
    expect(why(convert('bool', 2))).toMatch(/not a boolean/);
  });
});

describe('timestamp', () => {
  it('takes RFC 3339 text, written as UTC with up to microseconds', () => {
    expect(ok(convert('timestamp', '2024-05-01T12:00:00Z')).value).toBe('2024-05-01T12:00:00.000Z');
    expect(ok(convert('timestamp', '2024-05-01T12:00:00.123456789+02:00')).value).toBe('2024-05-01T10:00:00.123456Z');
    expect(ok(convert('timestamp', '0050-01-01T00:00:00Z')).value).toBe('0050-01-01T00:00:00.000Z');
    expect(ok(convert('timestamp', '2024-02-29 23:59:59-01:00')).value).toBe('2024-03-01T00:59:59.000Z');
  });
  it('takes epoch milliseconds', () => {
    expect(ok(convert('timestamp', 1714564800000)).value).toBe('2024-05-01T12:00:00.000Z');
    expect(ok(convert('timestamp', 1714564800000.5)).value).toBe('2024-05-01T12:00:00.000500Z');
  });
  it('refuses other text, impossible dates, and instants outside years 1 to 9999', () => {
    expect(why(convert('timestamp', '2024-05-01'))).toMatch(/RFC 3339/);
    expect(why(convert('timestamp', 'yesterday'))).toMatch(/RFC 3339/);
    expect(why(convert('timestamp', '2023-02-29T00:00:00Z'))).toMatch(/not a valid date/);
    expect(why(convert('timestamp', '2024-13-01T00:00:00Z'))).toMatch(/not a valid date/);
    expect(why(convert('timestamp', '2024-05-01T24:00:00Z'))).toMatch(/not a valid date/);
    expect(why(convert('timestamp', 1e17))).toMatch(/TIMESTAMP range/);
    expect(why(convert('timestamp', true))).toMatch(/boolean/);
  });
});

describe('string and json', () => {
  it('string takes text, and numbers and booleans as their JSON text; refuses objects and arrays', () => {
    expect(ok(convert('string', 'ok')).value).toBe('ok');
    expect(ok(convert('string', parseJson('12345678901234567890'))).value).toBe('12345678901234567890');
    expect(ok(convert('string', false)).value).toBe('false');
    expect(why(convert('string', [1]))).toMatch(/an array, not text/);
  });
  it('json keeps any value, as JSON text in BigQuery', () => {
    const t = ok(convert('json', parseJson('{"a":[1,9007199254740993]}')));
    expect(bigqueryCell(t)).toBe('{"a":[1,9007199254740993]}');
  });
  it('quotes long values cut', () => {
    const q = quoteValue('x'.repeat(500));
    expect(q.length).toBe(80);
    expect(q).toMatch(/^"x+…"$/);
  });
});
