/**
 * Loads the configuration: schema defaults < YAML file (`--config` / `CONFIG_FILE`) < environment. Every key is
 * parsed by its section's schema, then the sections' derived defaults are filled and their rules run, in the
 * order of the composition (schema.ts).
 *
 * Every problem is collected and thrown at once in one ConfigError (fail loudly at start, listing everything,
 * so an operator fixes a deploy in one round). Each problem names the variable, says what is wrong and shows
 * what was given, except for secret values, which are never shown.
 */
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import path from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { redactUrl } from '../core/redact.js';
import { looksLikeSecretRef } from '../core/settings/key.js';
import type { ConfigSource, HostFacts, RuleContext } from '../core/settings/section.js';
import { fsReason, isUnset, plain, quote, show } from '../core/settings/text.js';
import { readSecretRef, type SecretRef } from './secret-ref.js';
import {
  CONFIG_KEYS,
  CONFIG_SHAPE,
  ENV_PREFIXES,
  isConfigKey,
  keyMeta,
  LEGACY_ENV,
  OTHER_KNOWN_ENV,
  SECTIONS,
  type Config,
  type ConfigKey,
} from './schema.js';

export type { Config, ConfigKey } from './schema.js';
export type { ConfigSource } from '../core/settings/section.js';

export interface LoadOptions {
  /** The environment to read; process.env when omitted. */
  env?: NodeJS.ProcessEnv;
  /** A YAML file; when omitted, `env.CONFIG_FILE` (if set). */
  file?: string;
  /** The host name MQTT_CLIENT_ID is derived from; os.hostname() when omitted. */
  hostname?: string;
  /**
   * `run` sets this: a GOOGLE_APPLICATION_CREDENTIALS that names no readable file is then a warning, not a
   * problem. Credentials are a dependency like the cloud APIs: the node starts, spools, shows the cloud sinks
   * failing with the fix, and delivers once the file appears. `check-config` (the gate before a deploy) refuses it.
   */
  credentialsAtRun?: boolean;
}

export interface LoadResult {
  config: Config;
  warnings: string[];
  /** Where each key's value came from. A secret read from NAME_FILE counts as its layer (env or file). */
  sources: Record<ConfigKey, ConfigSource>;
  /** Keys given as a Secret Manager reference (`sm://…`): checked for form only; `run` resolves them. */
  secretRefs: Partial<Record<ConfigKey, SecretRef>>;
}

/** What one layer (the file or the environment) gives, and how to speak of it in a problem. */
interface Layer {
  source: 'file' | 'env';
  /** Appended to a problem about a value from this layer. */
  where: string;
  /** Relative NAME_FILE paths are resolved against this: the config file's folder, or the working directory. */
  baseDir: string;
  values: Map<ConfigKey, unknown>;
}

export function loadConfig(opts: LoadOptions = {}): LoadResult {
  const env = opts.env ?? process.env;
  const problems: string[] = [];
  const warnings: string[] = [];
  // Keys whose value could not even be read (an unreadable NAME_FILE): skipped by later checks, already reported.
  const unreadable = new Set<ConfigKey>();

  const file = opts.file ?? (env.CONFIG_FILE || undefined);
  const fileLayer: Layer = { source: 'file', where: ` (in config file ${quote(file ?? '')})`, baseDir: '', values: new Map() };
  if (file !== undefined) {
    fileLayer.baseDir = path.dirname(path.resolve(file));
    const entries = readYamlFile(file, problems);
    readLayer(fileLayer, entries, problems, unreadable);
  }
  // The environment holds many unrelated variables, so only schema keys (and NAME_FILE of secrets) are read.
  const envLayer: Layer = { source: 'env', where: '', baseDir: process.cwd(), values: new Map() };
  readLayer(envLayer, env, problems, unreadable);
  warnings.push(...unknownEnvironmentVariables(env));

  const sources = {} as Record<ConfigKey, ConfigSource>;
  const values: Partial<Record<ConfigKey, unknown>> = {};
  const invalid = new Set<ConfigKey>(unreadable);
  const secretRefs: Partial<Record<ConfigKey, SecretRef>> = {};
  for (const name of CONFIG_KEYS) {
    const layer = envLayer.values.has(name) ? envLayer : fileLayer.values.has(name) ? fileLayer : undefined;
    sources[name] = layer?.source ?? 'default';
    if (unreadable.has(name)) continue;
    const raw = layer?.values.get(name);
    if (looksLikeSecretRef(raw)) {
      // Only the form is checked (offline); the key's own checks run on the value `run` fetches (secrets.ts).
      const ref = readSecretRef(name, raw, layer?.where ?? '', problems);
      if (ref) {
        values[name] = raw.trim();
        secretRefs[name] = ref;
      } else invalid.add(name);
      continue;
    }
    const result = CONFIG_SHAPE[name].safeParse(raw);
    if (result.success) {
      values[name] = result.data;
    } else {
      invalid.add(name);
      problems.push(...describeIssues(name, raw, result.error.issues, layer?.where ?? ''));
    }
  }

  const host: HostFacts = { hostname: opts.hostname ?? osHostname() };
  for (const derived of SECTIONS.flatMap((section) => section.derived ?? [])) {
    // A key derived from an invalid one cannot be judged without it: only the root problem is reported.
    if (derived.from.some((k) => invalid.has(k as ConfigKey))) {
      for (const k of derived.keys as ConfigKey[]) if (values[k] === undefined) invalid.add(k);
    } else derived.fill(values, host);
  }

  const context: RuleContext = { sources, env, usesSecretManager: Object.keys(secretRefs).length > 0, credentialsAtRun: opts.credentialsAtRun === true };
  const valid = (...keys: string[]) => keys.every((k) => !invalid.has(k as ConfigKey));
  for (const section of SECTIONS) section.rules?.(values, valid, problems, warnings, context);
  if (problems.length > 0) throw new ConfigError(problems);
  return { config: values as Config, warnings, sources, secretRefs };
}

export function isSecretKey(name: string): boolean {
  return isConfigKey(name) && keyMeta(name).secret === true;
}

/** The configuration in schema order, fit to print or log: secrets set are "[redacted]", unset ones stay undefined. */
export function redactConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of CONFIG_KEYS) {
    const value: unknown = config[name];
    if (value !== undefined && isSecretKey(name)) out[name] = '[redacted]';
    else out[name] = typeof value === 'string' ? redactUrl(value) : value;
  }
  return out;
}

// ---- reading the layers

/**
 * Variables with one of the node's prefixes that it does not know: a typo (`PUBSUB_TOPICS`) or a name of the old
 * deployment (`MQTT_TOPIC`) would otherwise leave the real key at its default without a word.
 */
function unknownEnvironmentVariables(env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (isUnset(env[name])) continue;
    if (!ENV_PREFIXES.some((prefix) => name.toUpperCase().startsWith(prefix))) continue;
    if (isConfigKey(name) || OTHER_KNOWN_ENV.has(name)) continue;
    const fileOf = name.endsWith('_FILE') ? name.slice(0, -'_FILE'.length) : '';
    if (isSecretKey(fileOf)) continue;
    const legacy = LEGACY_ENV[name];
    if (legacy !== undefined) {
      out.push(`${name}: ${legacy}`);
    } else if (isConfigKey(fileOf)) {
      out.push(`${name}: is not read: only secret keys may be given as NAME_FILE; set ${fileOf} itself`);
    } else {
      const suggestion = suggestKey(name);
      out.push(`${name}: unknown environment variable, not read${suggestion ? `; did you mean ${suggestion}?` : ''}`);
    }
  }
  return out;
}

function readLayer(layer: Layer, entries: Record<string, unknown>, problems: string[], unreadable: Set<ConfigKey>): void {
  for (const name of CONFIG_KEYS) {
    const value = entries[name];
    const fileVar = `${name}_FILE`;
    const secretPath = keyMeta(name).secret ? entries[fileVar] : undefined;
    if (isUnset(secretPath)) {
      if (!isUnset(value)) layer.values.set(name, value);
      continue;
    }
    // The value is given as a file (Docker/Kubernetes secrets), so it stays out of the environment and the YAML.
    layer.values.set(name, undefined);
    // NAME_FILE=sm://… names the secret the file would hold: the same as NAME=sm://….
    if (looksLikeSecretRef(secretPath) && isUnset(value)) {
      layer.values.set(name, secretPath);
      continue;
    }
    if (!isUnset(value)) {
      problems.push(`${name}: both ${name} and ${fileVar} are set${layer.where}; set only one`);
      unreadable.add(name);
    } else if (typeof secretPath !== 'string') {
      problems.push(`${fileVar}: must be a file path, got ${show(secretPath)}${layer.where}`);
      unreadable.add(name);
    } else {
      const secret = readSecretFile(path.resolve(layer.baseDir, secretPath));
      if (secret.ok) layer.values.set(name, secret.value);
      else {
        problems.push(`${fileVar}: ${secret.error} ${quote(secretPath)}${layer.where}`);
        unreadable.add(name);
      }
    }
  }
}

function readSecretFile(file: string): { ok: true; value: string } | { ok: false; error: string } {
  let content: string;
  try {
    content = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, error: `cannot read the file (${fsReason(err)}):` };
  }
  // Editors and `echo` end files with a newline that is not part of the secret; only one is stripped.
  const value = content.replace(/\r?\n$/, '');
  // An empty secret file is a mount gone wrong far more often than a deliberate empty password.
  return value === '' ? { ok: false, error: 'the file is empty:' } : { ok: true, value };
}

function readYamlFile(file: string, problems: string[]): Record<string, unknown> {
  const label = `config file ${quote(file)}`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`${label}: cannot read it (${fsReason(err)})`);
    return {};
  }
  // prettyErrors off: the pretty form quotes the offending line, which may hold a secret.
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const err of doc.errors) {
      const { line, col } = lineCounter.linePos(err.pos[0]);
      problems.push(`${label}: line ${line}, column ${col}: ${err.message.split('\n')[0]}`);
    }
    return {};
  }
  const content: unknown = doc.toJS();
  if (content === null || content === undefined) return {};
  if (typeof content !== 'object' || Array.isArray(content)) {
    problems.push(`${label}: must be a mapping of KEY: value lines, like the environment variables`);
    return {};
  }
  const entries = content as Record<string, unknown>;
  for (const name of Object.keys(entries)) {
    const secretFileOf = name.endsWith('_FILE') ? name.slice(0, -'_FILE'.length) : '';
    if (isConfigKey(name) || isSecretKey(secretFileOf)) continue;
    // Unlike the environment, everything in the file is meant for us: a stray key is a typo or a stale name.
    const suggestion = suggestKey(name);
    problems.push(`${name}: unknown key in ${label}${suggestion ? `; did you mean ${suggestion}?` : ''}`);
  }
  return entries;
}

/** The closest schema key by edit distance (case ignored), when close enough to be a likely typo. */
function suggestKey(name: string): string | undefined {
  let best: { key: string; distance: number } | undefined;
  for (const key of CONFIG_KEYS) {
    const distance = editDistance(name.toUpperCase(), key);
    if (!best || distance < best.distance) best = { key, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(name.length / 4)) ? best.key : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

// ---- problems

function describeIssues(name: ConfigKey, raw: unknown, issues: z.core.$ZodIssue[], where: string): string[] {
  const meta = keyMeta(name);
  const out = new Set<string>(); // one check failing several ways (not whole and too big) says it once
  for (const issue of issues) {
    if (issue.code === 'custom' && issue.params?.['explained']) {
      out.add(`${name}: ${issue.message}${where}`);
      continue;
    }
    const hints = [meta.hint];
    // YAML reads `1234` or `true` as a number or boolean; a text key wants it quoted rather than guessed at.
    if (issue.code === 'invalid_type' && issue.expected === 'string') hints.push('quote it in YAML to make it text');
    const hint = hints.filter(Boolean).join('; ');
    const given = meta.secret ? 'a secret value, not shown' : show(raw);
    out.add(`${name}: must be ${plain(meta.accepts)}${hint ? ` (${hint})` : ''}, got ${given}${where}`);
  }
  return [...out];
}

