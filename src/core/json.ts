/**
 * JSON read without losing integers: JSON.parse turns 9007199254740993 into 9007199254740992, and an INT64
 * field must keep what the device sent (as docs/bigquery.md keeps the raw payload text for the same reason).
 * Integers beyond 2^53 become bigints; everything else parses as JSON.parse would. JSON.parse reads every
 * document first (it validates); only when its result holds an integer beyond 2^53 (the only values the two
 * readers give differently) is the text read again, losslessly.
 */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue };

/** Parses JSON text; throws JSON.parse's SyntaxError for text that is not JSON. */
export function parseJson(text: string): JsonValue {
  const plain = JSON.parse(text) as JsonValue; // validates, and is the answer unless a number may be inexact
  if (!hasUnsafeInteger(plain)) return plain;
  return new LosslessReader(text).document();
}

/** True when JSON.parse made an integer beyond 2^53 somewhere in the value: it may have rounded it. */
function hasUnsafeInteger(v: JsonValue): boolean {
  if (typeof v === 'number') return Number.isInteger(v) && !Number.isSafeInteger(v);
  if (v === null || typeof v !== 'object') return false;
  if (Array.isArray(v)) {
    for (const item of v) if (hasUnsafeInteger(item)) return true;
    return false;
  }
  for (const key in v) if (hasUnsafeInteger(v[key]!)) return true;
  return false;
}

/** JSON text of a value, bigints written as their digits. */
export function stringifyJson(value: JsonValue): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'bigint':
      return value.toString();
    case 'number':
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(stringifyJson).join(',')}]`;
  return `{${Object.entries(value)
    .map(([k, v]) => `${JSON.stringify(k)}:${stringifyJson(v)}`)
    .join(',')}}`;
}

/** The integer a decimal number's text denotes exactly (`12e3`, `5.0`), or undefined when it is not whole. */
export function decimalInteger(text: string): bigint | undefined {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m) return undefined;
  const [, sign, whole, fraction = '', exp = '0'] = m;
  const exponent = Number(exp) - fraction.length;
  let digits = (whole! + fraction).replace(/^0+(?=\d)/, '');
  if (exponent >= 0) {
    if (exponent > 400) return undefined; // far beyond any integer a column takes
    digits += '0'.repeat(exponent);
  } else {
    const cut = digits.length + exponent;
    const dropped = cut > 0 ? digits.slice(cut) : digits;
    if (/[1-9]/.test(dropped)) return undefined;
    digits = cut > 0 ? digits.slice(0, cut) : '0';
  }
  const n = BigInt(digits);
  return sign === '-' ? -n : n;
}

/** A reader for text JSON.parse has already accepted, so it checks nothing. */
class LosslessReader {
  private pos = 0;
  constructor(private readonly text: string) {}

  document(): JsonValue {
    return this.value();
  }

  private skip(): void {
    while (/\s/.test(this.text[this.pos] ?? '')) this.pos++;
  }

  private value(): JsonValue {
    this.skip();
    const c = this.text[this.pos]!;
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return this.string();
    if (c === 't') return this.literal('true', true);
    if (c === 'f') return this.literal('false', false);
    if (c === 'n') return this.literal('null', null);
    return this.number();
  }

  private literal<T>(word: string, v: T): T {
    this.pos += word.length;
    return v;
  }

  private object(): JsonValue {
    const out: Record<string, JsonValue> = {};
    this.pos++; // {
    this.skip();
    if (this.text[this.pos] === '}') return this.literal('}', out);
    for (;;) {
      this.skip();
      const name = this.string();
      this.skip();
      this.pos++; // :
      // defineProperty: a member named __proto__ is data, as JSON.parse makes it.
      Object.defineProperty(out, name, { value: this.value(), enumerable: true, writable: true, configurable: true });
      this.skip();
      if (this.text[this.pos++] === '}') return out;
    }
  }

  private array(): JsonValue {
    const out: JsonValue[] = [];
    this.pos++; // [
    this.skip();
    if (this.text[this.pos] === ']') return this.literal(']', out);
    for (;;) {
      out.push(this.value());
      this.skip();
      if (this.text[this.pos++] === ']') return out;
    }
  }

  private string(): string {
    const start = this.pos++;
    while (this.text[this.pos] !== '"') this.pos += this.text[this.pos] === '\\' ? 2 : 1;
    this.pos++;
    return JSON.parse(this.text.slice(start, this.pos)) as string;
  }

  private number(): number | bigint {
    const m = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
    m.lastIndex = this.pos;
    const text = m.exec(this.text)![0];
    this.pos += text.length;
    const n = Number(text);
    if (Number.isSafeInteger(n) || !Number.isInteger(n)) return n;
    return decimalInteger(text) ?? n;
  }
}
