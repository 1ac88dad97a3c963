/**
 * Row and schema checks of the local BigQuery server (bigquery-server.ts), as strict as BigQuery's
 * `tabledata.insertAll`: an unknown field, a value of the wrong type or a missing REQUIRED value makes the
 * row `invalid` with BigQuery's words (https://cloud.google.com/bigquery/docs/reference/rest/v2/tabledata/insertAll).
 *
 * A cell is taken as BigQuery takes JSON rows: INTEGER an integer number or a string of decimal digits, within
 * INT64; FLOAT a finite number or decimal text; BOOLEAN true/false (also as text); TIMESTAMP a date-time text
 * (RFC 3339, or with a space) of a real date between years 1 and 9999, or a number of seconds since the
 * epoch within that range; STRING text only; JSON the JSON text of a value (BigQuery's clients serialise JSON
 * cells before insertAll). Objects and arrays are refused for every type but a REPEATED column's array.
 */

export interface FieldSchema {
  name: string;
  type: string;
  mode?: string;
  description?: string;
  fields?: FieldSchema[];
}

/** One entry of an insertAll response's `insertErrors[].errors` (ErrorProto). */
export interface RowError {
  reason: string;
  location: string;
  debugInfo: string;
  message: string;
}

const TYPES: Record<string, string> = {
  STRING: 'STRING',
  BYTES: 'BYTES',
  INTEGER: 'INTEGER',
  INT64: 'INTEGER',
  FLOAT: 'FLOAT',
  FLOAT64: 'FLOAT',
  NUMERIC: 'NUMERIC',
  BIGNUMERIC: 'BIGNUMERIC',
  BOOLEAN: 'BOOLEAN',
  BOOL: 'BOOLEAN',
  TIMESTAMP: 'TIMESTAMP',
  DATE: 'DATE',
  DATETIME: 'DATETIME',
  TIME: 'TIME',
  JSON: 'JSON',
};

/** BigQuery's JSON type refuses documents nested deeper than this (docs: "JSON data type has a nesting limit of 500"). */
export const JSON_NESTING_LIMIT = 500;

/** Why a table's schema is not acceptable to `tables.insert`, or undefined. */
export function schemaProblem(fields: unknown): string | undefined {
  if (!Array.isArray(fields) || fields.length === 0) return 'Schema has no fields.';
  const seen = new Set<string>();
  for (const f of fields as FieldSchema[]) {
    if (typeof f?.name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,299}$/.test(f.name)) return `Invalid field name "${String(f?.name)}".`;
    if (seen.has(f.name.toLowerCase())) return `Duplicate column names: '${f.name}'.`;
    seen.add(f.name.toLowerCase());
    const type = String(f.type ?? '').toUpperCase();
    // RECORD columns are real BigQuery, but the raw table has none; this server says so instead of guessing.
    if (type === 'RECORD' || type === 'STRUCT') return `Field ${f.name}: RECORD columns are not supported by this test server.`;
    if (!TYPES[type]) return `Invalid value for type: ${String(f.type)} is not a valid value`;
    if (f.mode !== undefined && !['NULLABLE', 'REQUIRED', 'REPEATED'].includes(String(f.mode).toUpperCase())) {
      return `Invalid value for mode: ${String(f.mode)} is not a valid value`;
    }
  }
  return undefined;
}

/** The errors of one row against a schema; empty when BigQuery would take it. */
export function rowErrors(json: unknown, fields: FieldSchema[], ignoreUnknownValues: boolean): RowError[] {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return [invalid('', 'Row is not a JSON object.')];
  const row = json as Record<string, unknown>;
  const byName = new Map(fields.map((f) => [f.name.toLowerCase(), f]));
  const errors: RowError[] = [];
  for (const [key, value] of Object.entries(row)) {
    const field = byName.get(key.toLowerCase());
    if (!field) {
      if (!ignoreUnknownValues) errors.push(invalid(key, 'no such field.'));
      continue;
    }
    if (value === null || value === undefined) continue;
    const mode = (field.mode ?? 'NULLABLE').toUpperCase();
    if (mode === 'REPEATED') {
      if (!Array.isArray(value)) errors.push(invalid(key, `Array specified for non-repeated field: ${key}.`));
      else for (const v of value) pushProblem(errors, key, field, v);
    } else if (Array.isArray(value)) {
      errors.push(invalid(key, `Array specified for non-repeated field: ${key}.`));
    } else {
      pushProblem(errors, key, field, value);
    }
  }
  // Column names ignore case, in the row as in the schema.
  const given = new Map(Object.entries(row).map(([k, v]) => [k.toLowerCase(), v]));
  for (const f of fields) {
    const value = given.get(f.name.toLowerCase());
    if ((f.mode ?? '').toUpperCase() === 'REQUIRED' && (value === null || value === undefined)) {
      errors.push(invalid(f.name, `Missing required field: ${f.name}.`));
    }
  }
  return errors;
}

function pushProblem(errors: RowError[], key: string, field: FieldSchema, value: unknown): void {
  const problem = valueProblem(key, TYPES[field.type.toUpperCase()] ?? field.type, value);
  if (problem) errors.push(invalid(key, problem));
}

function invalid(location: string, message: string): RowError {
  return { reason: 'invalid', location, debugInfo: '', message };
}

const TIMESTAMP_TEXT = /^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d{1,12})?)?)?\s*(?:Z|UTC|[+-](\d{2})(?::?(\d{2}))?)?$/i;
/** INT64's range. */
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
/** TIMESTAMP's range in seconds: 0001-01-01 00:00:00 to 9999-12-31 23:59:59.999999 UTC. */
const TIMESTAMP_MIN_SECONDS = -62_135_596_800;
const TIMESTAMP_END_SECONDS = 253_402_300_800;
const DECIMAL_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

function valueProblem(key: string, type: string, value: unknown): string | undefined {
  const shown = typeof value === 'string' ? value.slice(0, 100) : JSON.stringify(value)?.slice(0, 100);
  if (typeof value === 'object') return `This field: ${key} is not a record.`;
  switch (type) {
    case 'STRING':
      return typeof value === 'string' ? undefined : `Cannot convert value to string: ${shown}`;
    case 'BYTES':
      return typeof value === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(value) ? undefined : `Could not parse '${shown}' as bytes (base64).`;
    case 'INTEGER': {
      // A JSON number beyond 2^53 arrives rounded to a double here; within INT64 it is still a whole number.
      const ok =
        (typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) ||
        (typeof value === 'string' && /^[+-]?\d+$/.test(value) && BigInt(value) >= INT64_MIN && BigInt(value) <= INT64_MAX);
      return ok ? undefined : `Cannot convert value to integer (bad value): ${shown}`;
    }
    case 'FLOAT':
    case 'NUMERIC':
    case 'BIGNUMERIC': {
      const ok = (typeof value === 'number' && Number.isFinite(value)) || (typeof value === 'string' && DECIMAL_TEXT.test(value) && Number.isFinite(Number(value)));
      return ok ? undefined : `Cannot convert value to floating point (bad value): ${shown}`;
    }
    case 'BOOLEAN': {
      const ok = typeof value === 'boolean' || (typeof value === 'string' && /^(true|false)$/i.test(value));
      return ok ? undefined : `Cannot convert value to boolean: ${shown}`;
    }
    case 'TIMESTAMP':
      return timestampOk(value) ? undefined : `Could not parse '${shown}' as a timestamp. Required format is YYYY-MM-DD HH:MM[:SS[.SSSSSS]] or YYYY/MM/DD HH:MM[:SS[.SSSSSS]]`;
    case 'DATE':
      return typeof value === 'string' && /^\d{4}-\d{1,2}-\d{1,2}$/.test(value) ? undefined : `Could not parse '${shown}' as a date.`;
    case 'DATETIME':
    case 'TIME':
      return typeof value === 'string' ? undefined : `Cannot convert value to ${type.toLowerCase()}: ${shown}`;
    case 'JSON':
      return jsonProblem(value);
    default:
      return `Unsupported type ${type}.`;
  }
}

function timestampOk(value: unknown): boolean {
  // A number is seconds since the epoch.
  if (typeof value === 'number') return Number.isFinite(value) && value >= TIMESTAMP_MIN_SECONDS && value < TIMESTAMP_END_SECONDS;
  if (typeof value !== 'string') return false;
  const m = TIMESTAMP_TEXT.exec(value.trim());
  if (!m) return false;
  const [year, month, day, hour, minute, second, offsetHours, offsetMinutes] = [m[1], m[2], m[3], m[4] ?? '0', m[5] ?? '0', m[6] ?? '0', m[7] ?? '0', m[8] ?? '0'].map(Number) as number[];
  const daysInMonth = new Date(Date.UTC(2000, month!, 0)).getUTCDate() - (month === 2 && !leapYear(year!) ? 1 : 0);
  return (
    year! >= 1 && month! >= 1 && month! <= 12 && day! >= 1 && day! <= daysInMonth &&
    hour! <= 23 && minute! <= 59 && second! <= 59 && offsetHours! <= 14 && offsetMinutes! <= 59
  );
}

function leapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

/** insertAll takes a JSON cell as JSON text; its nesting is limited. */
function jsonProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `Cannot convert value to JSON: expected JSON text, got ${typeof value}.`;
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') max = Math.max(max, ++depth);
    else if (c === '}' || c === ']') depth--;
  }
  try {
    JSON.parse(value);
  } catch (err) {
    return `Invalid JSON: ${(err as Error).message}`;
  }
  if (max > JSON_NESTING_LIMIT) return `JSON nesting depth ${max} exceeds the limit of ${JSON_NESTING_LIMIT}.`;
  return undefined;
}
