/**
 * A field's value converted to its type, or the reason it does not convert. A value is never made NULL or
 * rounded to fit: "abc" as a float, 1.5 as an int, an int beyond INT64 are refusals the dead letter names.
 */
import { rfc3339 } from '../core/message.js';
import { stringifyJson, type JsonValue } from '../core/json.js';
import type { FieldType } from './types.js';

/** A converted value: int as a bigint (INT64 beyond 2^53 kept exactly), timestamp as RFC 3339 UTC text. */
export type Typed =
  | { type: 'string'; value: string }
  | { type: 'int'; value: bigint }
  | { type: 'float'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'timestamp'; value: string }
  | { type: 'json'; value: JsonValue };

export type Conversion = { ok: true; typed: Typed } | { ok: false; why: string };

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
// BigQuery's TIMESTAMP range: 0001-01-01 00:00:00 to 9999-12-31 23:59:59.999999 UTC.
const MIN_MS = -62135596800000;
const MAX_MS = 253402300799999;

const refuse = (why: string): Conversion => ({ ok: false, why });

/** Converts a present, non-null value. */
export function convert(type: FieldType, value: JsonValue): Conversion {
  switch (type) {
    case 'string':
      return toText(value);
    case 'int':
      return toInt(value);
    case 'float':
      return toFloat(value);
    case 'bool':
      return toBool(value);
    case 'timestamp':
      return toTimestamp(value);
    case 'json':
      return { ok: true, typed: { type: 'json', value } };
  }
}

function kindOf(value: JsonValue): string {
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'bigint') return 'a number';
  return `a ${typeof value}`;
}

function toText(value: JsonValue): Conversion {
  if (typeof value === 'string') return { ok: true, typed: { type: 'string', value } };
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return { ok: true, typed: { type: 'string', value: stringifyJson(value) } };
  }
  return refuse(`is ${kindOf(value)}, not text (type json keeps it whole)`);
}

function toInt(value: JsonValue): Conversion {
  let n: bigint;
  if (typeof value === 'bigint') n = value;
  else if (typeof value === 'number') {
    if (!Number.isInteger(value)) return refuse('is not a whole number');
    // Exact integers beyond 2^53 arrive as bigints (json.ts); a number this large was written with a fraction
    // or exponent and rounded, so its digits are not the ones sent.
    if (!Number.isSafeInteger(value)) return refuse('is not a whole number that can be read exactly');
    n = BigInt(value);
  } else if (typeof value === 'string' && /^[+-]?\d+$/.test(value.trim())) n = BigInt(value.trim());
  else if (typeof value === 'string') return refuse('is not a whole number');
  else return refuse(`is ${kindOf(value)}, not a whole number`);
  if (n < INT64_MIN || n > INT64_MAX) return refuse('is outside the INT64 range');
  return { ok: true, typed: { type: 'int', value: n } };
}

const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

function toFloat(value: JsonValue): Conversion {
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'bigint') n = Number(value);
  else if (typeof value === 'string' && DECIMAL.test(value.trim())) n = Number(value.trim());
  else if (typeof value === 'string') return refuse('is not a number');
  else return refuse(`is ${kindOf(value)}, not a number`);
  if (!Number.isFinite(n)) return refuse('is beyond the FLOAT64 range');
  return { ok: true, typed: { type: 'float', value: n } };
}

function toBool(value: JsonValue): Conversion {
  if (typeof value === 'boolean') return { ok: true, typed: { type: 'bool', value } };
  const word = typeof value === 'string' ? value.trim().toLowerCase() : typeof value === 'number' ? String(value) : undefined;
  if (word === 'true' || word === '1') return { ok: true, typed: { type: 'bool', value: true } };
  if (word === 'false' || word === '0') return { ok: true, typed: { type: 'bool', value: false } };
  return refuse('is not a boolean (true/false, or 1/0)');
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

function toTimestamp(value: JsonValue): Conversion {
  if (typeof value === 'number' || typeof value === 'bigint') return epochMillis(Number(value));
  if (typeof value !== 'string') return refuse(`is ${kindOf(value)}, not an RFC 3339 timestamp or epoch milliseconds`);
  const m = RFC3339.exec(value.trim());
  if (!m) return refuse('is not an RFC 3339 timestamp (like 2024-05-01T12:00:00Z)');
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const days = new Date(Date.UTC(2000, mo, 0)).getUTCDate(); // days in month `mo` of a leap year
  if (mo < 1 || mo > 12 || d < 1 || d > days || (mo === 2 && d === 29 && !leap(y)) || h > 23 || mi > 59 || s > 59) {
    return refuse('is not a valid date and time');
  }
  const offset = m[8] ? 0 : (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11])) * 60_000;
  if (Number(m[10] ?? 0) > 23 || Number(m[11] ?? 0) > 59) return refuse('has an invalid UTC offset');
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d); // not Date.UTC: it reads years 0-99 as 1900-1999
  date.setUTCHours(h, mi, s, 0);
  const ms = date.getTime() - offset;
  if (ms < MIN_MS || ms > MAX_MS) return refuse('is outside the TIMESTAMP range (years 1 to 9999)');
  // BigQuery keeps microseconds: digits beyond the sixth cannot be stored.
  const fraction = (m[7] ?? '').padEnd(3, '0').slice(0, 6);
  return { ok: true, typed: { type: 'timestamp', value: `${rfc3339(ms).slice(0, 19)}.${fraction}Z` } };
}

function epochMillis(ms: number): Conversion {
  if (!Number.isFinite(ms) || ms < MIN_MS || ms > MAX_MS) return refuse('is outside the TIMESTAMP range (years 1 to 9999) as epoch milliseconds');
  const whole = Math.floor(ms);
  const micros = Math.round((ms - whole) * 1000);
  const text = rfc3339(whole);
  return { ok: true, typed: { type: 'timestamp', value: micros === 0 ? text : `${text.slice(0, -1)}${String(micros).padStart(3, '0')}Z` } };
}

function leap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

// ---- a typed value as each destination takes it

/** A BigQuery insertAll cell: INT64 beyond 2^53 as its digits (a JSON number would round), JSON as JSON text. */
export function bigqueryCell(t: Typed): string | number | boolean {
  switch (t.type) {
    case 'int':
      return t.value >= -(2n ** 53n) && t.value <= 2n ** 53n ? Number(t.value) : t.value.toString();
    case 'json':
      return stringifyJson(t.value);
    default:
      return t.value;
  }
}

/** A Pub/Sub attribute value or an ordering-key part: text. */
export function attributeText(t: Typed): string {
  switch (t.type) {
    case 'string':
    case 'timestamp':
      return t.value;
    case 'json':
      return stringifyJson(t.value);
    default:
      return stringifyJson(t.value);
  }
}

/** The value inside a `data: fields` JSON object: numbers stay numbers (exactly), JSON stays nested. */
export function jsonValue(t: Typed): JsonValue {
  return t.value;
}

/** A value quoted in a problem or dead letter: JSON, cut when long (a payload may be megabytes). */
export function quoteValue(value: JsonValue, max = 80): string {
  const text = stringifyJson(value);
  return text.length > max ? `${text.slice(0, max - 2)}…${text.at(-1)}` : text;
}
