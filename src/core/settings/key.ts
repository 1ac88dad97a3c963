/**
 * A configuration key: a zod schema registered in `settingsRegistry` with what the docs and the loader know about
 * it. Keys are the environment variable names, and a YAML config file uses the same flat keys; each component
 * declares its own keys (its section, section.ts) and the configuration loader parses, checks and documents them
 * all from this registry, so nothing is described twice.
 *
 * Values arrive as strings from the environment and as strings, numbers or booleans from YAML, so every key
 * schema accepts `unknown` input and reads it the same way whichever layer it came from. Defaults are written
 * in their environment form (`'6GiB'`, `'1883'`) and parsed like a given value (zod `prefault`), so the default
 * the docs show is exactly the one that is used.
 */
import { z } from 'zod';
import type { EnvType, Field } from './fields.js';

/** What the docs and the loader know about a key beyond its zod type. */
export interface KeyMeta {
  /** What the key does, in Markdown: the docs' description column. */
  description: string;
  /** The accepted values in Markdown, worded to follow "must be" in a problem ("a whole number from 1 to 10"). */
  accepts: string;
  /** Extra words for a problem message only ("true/false, on/off, …"); the docs explain these once. */
  hint?: string;
  envType: EnvType;
  /** The default in its environment form, parsed like a given value. */
  default?: string;
  /** A default worked out at load time from other values, as the docs describe it. */
  derivedDefault?: string;
  /** The value is never printed: not in problems, not in `check-config`, not in logs. */
  secret?: boolean;
  /**
   * The value is the path of a file the node reads (a certificate, a password file). Like a secret key, it may be
   * a Secret Manager reference (`sm://…`), which `run` resolves into a file in a private folder.
   */
  file?: boolean;
}

export const settingsRegistry = z.registry<KeyMeta>();

type KeyInfo = Pick<KeyMeta, 'description' | 'secret' | 'derivedDefault' | 'file'>;

export function key<S extends z.ZodType>(field: Field<S>, info: KeyInfo & { default: string }): z.ZodPrefault<S>;
export function key<S extends z.ZodType>(field: Field<S>, info: KeyInfo): z.ZodOptional<S>;
export function key<S extends z.ZodType>(field: Field<S>, info: KeyInfo & { default?: string }): z.ZodType {
  const { schema, ...rest } = field;
  // Every field schema takes `unknown` input (preprocess or string), so a string default is a valid input.
  const wrapped = info.default === undefined ? schema.optional() : schema.prefault(info.default as z.input<S>);
  return wrapped.register(settingsRegistry, { ...rest, ...info });
}

export const SECRET_REF_PREFIX = 'sm://';

/**
 * True when the value is meant as a Secret Manager reference (it starts with sm://), well-formed or not. Until
 * `run` has fetched it, a secret or file key may hold such a reference instead of its value: checks that read
 * the value (a certificate's content) skip it.
 */
export function looksLikeSecretRef(value: unknown): value is string {
  return typeof value === 'string' && value.trim().startsWith(SECRET_REF_PREFIX);
}
