/**
 * The value readers and field builders of the configuration keys: each builder returns the zod type and the words
 * that describe it, so the docs and the problems agree. Values arrive as strings from the environment and as
 * strings, numbers or booleans from YAML; every field takes `unknown` input. Fields only one component reads
 * (a broker URL, a BigQuery table id) are built beside that component's keys from these.
 */
import { z } from 'zod';

/** How an environment variable's string is read; a hint for tools and the docs. */
export type EnvType = 'string' | 'integer' | 'boolean' | 'enum' | 'byte-size' | 'url' | 'list' | 'host-port';

/** A key's type before its default and metadata are attached. */
export interface Field<S extends z.ZodType> {
  schema: S;
  accepts: string;
  hint?: string;
  envType: EnvType;
}

// ---- value readers: turn a raw string (env) or scalar (YAML) into the typed value, or leave it for zod to reject

/** The words a boolean accepts, as true/false pairs, in any case; the docs list the same pairs. */
export const BOOLEAN_PAIRS = [['true', 'false'], ['on', 'off'], ['1', '0'], ['yes', 'no']] as const;
const BOOLEAN_WORDS = new Map<string, boolean>(BOOLEAN_PAIRS.flatMap(([yes, no]) => [[yes, true], [no, false]]));

export function readBoolean(raw: unknown): unknown {
  if (typeof raw === 'string') return BOOLEAN_WORDS.get(raw.trim().toLowerCase()) ?? raw;
  if (raw === 1 || raw === 0) return raw === 1; // YAML `1` and `0` are numbers
  return raw;
}

export function readWholeNumber(raw: unknown): unknown {
  // Only plain decimal digits: `1e3`, `0x10` or `12abc` are not what an operator means by a port or a count.
  return typeof raw === 'string' && /^\s*[+-]?\d+\s*$/.test(raw) ? Number(raw.trim()) : raw;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
// KB/MB/GB are decimal (SI) and KiB/MiB/GiB binary, as in IEC 80000-13.
const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: KiB, mib: MiB, gib: GiB };

/** `'6GiB'` → 6442450944; `'1.5 MB'` → 1500000; a plain integer is bytes. Anything else is returned as given. */
export function parseByteSize(raw: unknown): unknown {
  if (typeof raw !== 'string') return raw;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)?\s*$/i.exec(raw);
  if (!m) return raw;
  const unit = (m[2] ?? 'b').toLowerCase();
  const multiplier = BYTE_UNITS[unit];
  if (multiplier === undefined || (multiplier === 1 && m[1]!.includes('.'))) return raw; // no fractional bytes
  return Math.round(Number(m[1]) * multiplier);
}

function formatBytes(n: number): string {
  for (const [unit, size] of [['GiB', GiB], ['MiB', MiB], ['KiB', KiB]] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  }
  return n === 1 ? '1 byte' : `${n} bytes`;
}


// ---- field builders: each returns the zod type and the words that describe it, so docs and problems agree

export function wholeNumber(min: number, max: number) {
  const schema = z.preprocess(readWholeNumber, z.int().min(min).max(max));
  return { schema, accepts: `a whole number from ${min} to ${max}`, envType: 'integer' } satisfies Field<typeof schema>;
}

export function byteSize(min: number, max: number = Number.MAX_SAFE_INTEGER) {
  const schema = z.preprocess(parseByteSize, z.int().min(min).max(max));
  const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${formatBytes(min)}` : `from ${formatBytes(min)} to ${formatBytes(max)}`;
  const hint = 'a whole number of bytes, or a number with a unit: B, KB, MB, GB, KiB, MiB or GiB';
  return { schema, accepts: `a byte size ${range}`, hint, envType: 'byte-size' } satisfies Field<typeof schema>;
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  // Any case is accepted and normalised to lower case: `PRD` and `prd` mean the same environment.
  const schema = z.preprocess((raw) => (typeof raw === 'string' ? raw.trim().toLowerCase() : raw), z.enum(values));
  const list = values.map((v) => `\`${v}\``);
  const accepts = `one of ${list.slice(0, -1).join(', ')} or ${list.at(-1)} (any case)`;
  return { schema, accepts, envType: 'enum' } satisfies Field<typeof schema>;
}

export const BOOLEAN_HINT = `${BOOLEAN_PAIRS.map((pair) => pair.join('/')).join(', ')}, any case`;

export function text(accepts: string, check?: { test: (value: string) => boolean; envType?: EnvType }) {
  // YAML numbers are not turned into text: `0755` would silently become "755". The loader asks to quote it.
  const base = z.string().min(1);
  const schema = check ? base.refine(check.test) : base;
  return { schema, accepts, envType: check?.envType ?? 'string' } satisfies Field<typeof schema>;
}

export function boolean() {
  const schema = z.preprocess(readBoolean, z.boolean());
  return { schema, accepts: 'a boolean', hint: BOOLEAN_HINT, envType: 'boolean' } satisfies Field<typeof schema>;
}
