/**
 * Where a field's value comes from: `payload.<path>` (members by dots, array elements by `[n]`; `payload` alone is
 * the whole document), `topic.<variable>`
 * or `property.<name>` (an MQTT 5 user property, its first value when repeated). Reading a message's fields gives
 * each its typed value, NULL for an absent optional one, or the refusal that dead-letters the message.
 */
import { convert, quoteValue, type Typed } from './convert.js';
import type { JsonValue } from '../core/json.js';
import type { FieldSource, FieldSpec, MessageProperties, PathStep } from './types.js';

/** The source a `from` names, or why it names none (worded to follow the `from` text). */
export function parseFrom(text: string): { source: FieldSource } | { problem: string } {
  const dot = text.indexOf('.');
  const bracket = text.indexOf('[');
  const head = text.slice(0, dot === -1 ? (bracket === -1 ? undefined : bracket) : bracket === -1 ? dot : Math.min(dot, bracket));
  const rest = text.slice(head.length);
  const expected = 'must be payload.<path>, topic.<variable> or property.<name>';
  if (head === 'payload') {
    const path = parsePath(rest);
    if (!path) return { problem: `${expected}; the path is member names by dots and [n] for array elements (payload.readings[0].value)` };
    return { source: { kind: 'payload', path, text } };
  }
  if ((head === 'topic' || head === 'property') && rest.startsWith('.') && rest.length > 1) {
    const name = rest.slice(1);
    return { source: head === 'topic' ? { kind: 'topic', variable: name, text } : { kind: 'property', name, text } };
  }
  return { problem: expected };
}

function parsePath(rest: string): PathStep[] | undefined {
  const steps: PathStep[] = [];
  const re = /\.([^.[\]]+)|\[(\d+)\]/y;
  let at = 0;
  while (at < rest.length) {
    re.lastIndex = at;
    const m = re.exec(rest);
    if (!m) return undefined;
    steps.push(m[1] !== undefined ? m[1] : Number(m[2]));
    at = re.lastIndex;
  }
  return steps; // none: the whole document
}

/** What fields are read from. `payload` is the decoded JSON (absent for decode: raw, which has no payload fields). */
export interface FieldInput {
  payload?: JsonValue;
  variables: Readonly<Record<string, string>>;
  properties?: MessageProperties;
}

/** The value a source names, or undefined when it is not there. */
export function readSource(source: FieldSource, input: FieldInput): JsonValue | undefined {
  switch (source.kind) {
    case 'topic':
      return input.variables[source.variable];
    case 'property': {
      const v = input.properties?.userProperties?.[source.name];
      return Array.isArray(v) ? v[0] : v;
    }
    case 'payload': {
      let at: JsonValue | undefined = input.payload;
      for (const step of source.path) {
        if (typeof step === 'number') at = Array.isArray(at) ? at[step] : undefined;
        else at = at !== null && typeof at === 'object' && !Array.isArray(at) && Object.hasOwn(at, step) ? at[step] : undefined;
        if (at === undefined) return undefined;
      }
      return at;
    }
  }
}

export type FieldValues = { ok: true; values: Record<string, Typed | null> } | { ok: false; detail: string };

/** Every field's typed value (NULL for an absent optional one), or the first refusal, naming the field and value. */
export function readFields(fields: readonly FieldSpec[], input: FieldInput): FieldValues {
  const values: Record<string, Typed | null> = {};
  for (const field of fields) {
    const raw = readSource(field.from, input);
    if (raw === undefined || raw === null) {
      if (field.optional) {
        values[field.name] = null;
        continue;
      }
      const what = raw === null ? 'is null' : 'is missing';
      return { ok: false, detail: `field ${field.name}: ${field.from.text} ${what} (the field is not optional)` };
    }
    const c = convert(field.type, raw);
    if (!c.ok) return { ok: false, detail: `field ${field.name}: ${field.from.text} = ${quoteValue(raw)} ${c.why} (type ${field.type})` };
    values[field.name] = c.typed;
  }
  return { ok: true, values };
}
