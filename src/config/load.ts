/**
 * Loads the configuration: schema defaults < YAML file (`--config` / `CONFIG_FILE`) < environment.
 *
 * Every problem is collected and thrown at once in one ConfigError (fail loudly at start, listing everything,
 * so an operator fixes a deploy in one round). Each problem names the variable, says what is wrong and shows
 * what was given, except for secret values, which are never shown.
 */
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import path from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { looksLikeSecretRef, readSecretRef, type SecretRef } from './secret-ref.js';
import {
  CONFIG_KEYS,
  configSchema,
  ENV_PREFIXES,
  isConfigKey,
  keyMeta,
  LEGACY_ENV,
  OTHER_KNOWN_ENV,
  PUBSUB_TOPIC_PATH,
  type ConfigKey,
} from './schema.js';
import { applyBrokerSecurityDefaults, checkBrokerSecurity } from '../broker/security/policy.js';

type Parsed = z.output<typeof configSchema>;

/** The typed configuration. MQTT_CLIENT_ID and FILE_SINK_DIR are always set: unset, they are derived. */
export type Config = Omit<Parsed, 'MQTT_CLIENT_ID' | 'FILE_SINK_DIR' | 'MQTT_PLAINTEXT' | 'MQTT_ALLOW_ANONYMOUS'> & {
  MQTT_CLIENT_ID: string;
  FILE_SINK_DIR: string;
  /** Derived from APP_ENV when unset (broker/security/policy.ts). */
  MQTT_PLAINTEXT: boolean;
  MQTT_ALLOW_ANONYMOUS: boolean;
};
export type ConfigSource = 'default' | 'file' | 'env';

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
    const result = (configSchema.shape[name] as z.ZodType).safeParse(raw);
    if (result.success) {
      values[name] = result.data;
    } else {
      invalid.add(name);
      problems.push(...describeIssues(name, raw, result.error.issues, layer?.where ?? ''));
    }
  }

  const v = values as Partial<Config>;
  if (invalid.has('APP_ENV')) {
    // Keys derived from APP_ENV cannot be judged without it: only the root problem is reported.
    for (const derived of ['MQTT_CLIENT_ID', 'MQTT_PLAINTEXT', 'MQTT_ALLOW_ANONYMOUS'] as const) {
      if (values[derived] === undefined) invalid.add(derived);
    }
  }
  if (v.MQTT_CLIENT_ID === undefined && v.APP_ENV !== undefined) {
    values.MQTT_CLIENT_ID = deriveClientId(opts.hostname ?? osHostname(), v.APP_ENV);
  }
  if (v.FILE_SINK_DIR === undefined && v.DATA_DIR !== undefined) values.FILE_SINK_DIR = path.join(v.DATA_DIR, 'out');
  applyBrokerSecurityDefaults(values);

  const context: RuleContext = { sources, env, usesSecretManager: Object.keys(secretRefs).length > 0, credentialsAtRun: opts.credentialsAtRun === true };
  checkRules(v, context, (...keys) => keys.every((k) => !invalid.has(k)), problems, warnings);
  if (problems.length > 0) throw new ConfigError(problems);
  return { config: values as Config, warnings, sources, secretRefs };
}

/** `mqtt-ingest-<hostname>-<app_env>`, safe as a client id everywhere. Never random: see MQTT_CLIENT_ID. */
export function deriveClientId(hostname: string, appEnv: string): string {
  return `mqtt-ingest-${hostname}-${appEnv}`.replace(/[^A-Za-z0-9_-]/g, '-');
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
    else out[name] = typeof value === 'string' ? redactUrlPassword(value) : value;
  }
  return out;
}

/** A cloud sink is configured: then FILE_SINK=auto leaves the file sink off. */
export function hasCloudSink(config: Pick<Config, 'PUBSUB_TOPIC' | 'BIGQUERY_DATASET' | 'BIGQUERY_TABLE'>): boolean {
  return config.PUBSUB_TOPIC !== undefined || bigquerySinkEnabled(config);
}

/** The BigQuery sink is on when its dataset and table are both set (a rule below refuses one without the other). */
export function bigquerySinkEnabled(config: Pick<Config, 'BIGQUERY_DATASET' | 'BIGQUERY_TABLE'>): boolean {
  return config.BIGQUERY_DATASET !== undefined && config.BIGQUERY_TABLE !== undefined;
}

export function fileSinkEnabled(config: Pick<Config, 'FILE_SINK' | 'PUBSUB_TOPIC' | 'BIGQUERY_DATASET' | 'BIGQUERY_TABLE'>): boolean {
  return config.FILE_SINK === 'auto' ? !hasCloudSink(config) : config.FILE_SINK;
}

/** The full `projects/P/topics/T` path of the Pub/Sub topic, or undefined when the sink is off. */
export function pubsubTopicPath(config: Pick<Config, 'PUBSUB_TOPIC' | 'GCP_PROJECT_ID'>): string | undefined {
  const topic = config.PUBSUB_TOPIC;
  if (topic === undefined || PUBSUB_TOPIC_PATH.test(topic)) return topic;
  return `projects/${config.GCP_PROJECT_ID}/topics/${topic}`;
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

function isUnset(value: unknown): boolean {
  // An empty variable counts as unset (deploy templates often write `NAME=`); so do YAML `KEY:` and `KEY: ""`.
  return value === undefined || value === null || value === '';
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

function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const reasons: Record<string, string> = {
    ENOENT: 'no such file',
    EACCES: 'permission denied',
    EISDIR: 'it is a directory',
  };
  return (code && reasons[code]) ?? (err instanceof Error ? err.message : String(err));
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

/** The docs' Markdown `code` becomes "code" in a terminal message. */
function plain(markdown: string): string {
  return markdown.replace(/`([^`]*)`/g, '"$1"');
}

function quote(s: string): string {
  return JSON.stringify(s);
}

/** A given value as a problem shows it: quoted, shortened, and without a password inside a URL. */
function show(value: unknown): string {
  const text = typeof value === 'string' ? quote(redactUrlPassword(value)) : JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 76)}…${text.at(-1)}` : text;
}

/** `mqtt://user:pw@host` → `mqtt://user:[redacted]@host`: a broker URL may carry its password. */
function redactUrlPassword(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@/\s]+@/i, '$1[redacted]@');
}

// ---- rules across keys; each runs only when the keys it reads are valid, so one mistake is not reported twice

/** What some rules read besides the values: where each came from, the raw environment, sm:// references. */
interface RuleContext {
  sources: Record<ConfigKey, ConfigSource>;
  env: NodeJS.ProcessEnv;
  usesSecretManager: boolean;
  credentialsAtRun: boolean;
}

function checkRules(
  c: Partial<Config>,
  context: RuleContext,
  valid: (...keys: ConfigKey[]) => boolean,
  problems: string[],
  warnings: string[],
): void {
  checkBrokerSecurity(c, valid, problems, warnings);
  checkBigQueryRules(c, context.sources, valid, problems, warnings);
  checkDirectories(c, valid, problems);
  if (valid('SPOOL_ACCEPT_LOSS') && c.SPOOL_ACCEPT_LOSS) {
    warnings.push(
      'SPOOL_ACCEPT_LOSS: is on, so a damaged spool (lost acknowledged messages) starts with a warning instead of ' +
        'being refused; set it back to false after the one start it was meant for',
    );
  }
  checkGoogleCredentials(c, context, valid, problems, warnings);
  if (valid('APP_ENV', 'FILE_SINK', 'PUBSUB_TOPIC', 'BIGQUERY_DATASET', 'BIGQUERY_TABLE') && c.APP_ENV !== 'dev' && !hasCloudSink(c) && c.FILE_SINK !== false) {
    warnings.push(
      `PUBSUB_TOPIC: no cloud sink is configured in ${c.APP_ENV} (PUBSUB_TOPIC and BIGQUERY_DATASET/BIGQUERY_TABLE are unset), so ` +
        'messages go only to NDJSON files under FILE_SINK_DIR, on a disk that App Engine discards when the instance is ' +
        'restarted or replaced; set PUBSUB_TOPIC and/or BIGQUERY_DATASET and BIGQUERY_TABLE',
    );
  }
  if (valid('PUBSUB_TOPIC', 'GCP_PROJECT_ID') && c.PUBSUB_TOPIC !== undefined && c.GCP_PROJECT_ID === undefined) {
    if (!PUBSUB_TOPIC_PATH.test(c.PUBSUB_TOPIC)) {
      problems.push(
        `PUBSUB_TOPIC: ${quote(c.PUBSUB_TOPIC)} is a topic id without a project, and GCP_PROJECT_ID is unset; ` +
          `set GCP_PROJECT_ID or give the full path projects/PROJECT/topics/${c.PUBSUB_TOPIC}`,
      );
    }
  }
  if (valid('MQTT_BROKER', 'MQTT_BROKER_MODE')) {
    const mode = c.MQTT_BROKER_MODE;
    if (mode === 'external' && c.MQTT_BROKER === undefined) {
      problems.push('MQTT_BROKER_MODE: is "external" but MQTT_BROKER is unset; set MQTT_BROKER to the broker\'s URL');
    }
    if ((mode === 'mosquitto' || mode === 'embedded') && c.MQTT_BROKER !== undefined) {
      problems.push(
        `MQTT_BROKER_MODE: is ${quote(mode)}, which runs a broker here, but MQTT_BROKER is set to an external broker ` +
          `(${show(c.MQTT_BROKER)}); unset one of the two`,
      );
    }
    if (mode === 'auto' && c.MQTT_BROKER !== undefined && isLoopback(c.MQTT_BROKER)) {
      warnings.push(
        `MQTT_BROKER: ${show(c.MQTT_BROKER)} points at this host, so it is used as an external broker and the node ` +
          'starts none of its own. The old Python deployment set MQTT_BROKER to its in-container broker; here leave ' +
          'it unset and the node runs its own broker (or set MQTT_BROKER_MODE=external if a separate broker really ' +
          'listens there).',
      );
    }
  }
  if (valid('FILE_SINK', 'PUBSUB_TOPIC', 'BIGQUERY_DATASET', 'BIGQUERY_TABLE') && c.FILE_SINK === false && !hasCloudSink(c)) {
    warnings.push(
      'FILE_SINK: is off and no cloud sink is configured (PUBSUB_TOPIC and BIGQUERY_DATASET/BIGQUERY_TABLE are unset): the node will only spool and count messages',
    );
  }
  if (valid('RETRY_INITIAL_DELAY_MS', 'RETRY_MAX_DELAY_MS') && c.RETRY_MAX_DELAY_MS! < c.RETRY_INITIAL_DELAY_MS!) {
    problems.push(
      `RETRY_MAX_DELAY_MS: must be at least RETRY_INITIAL_DELAY_MS (${c.RETRY_INITIAL_DELAY_MS}), got ${c.RETRY_MAX_DELAY_MS}`,
    );
  }
}

function isLoopback(url: string): boolean {
  // mqtt:// is not a "special" URL scheme, so the host is kept as written: `127.1` is not expanded.
  const host = new URL(url).hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '::1' || /^::ffff:127\./.test(host);
}

/**
 * DATA_DIR (spool, broker persistence) and the file sink's folder must be directories this user may write, or
 * creatable: found here rather than as an ENOTDIR or "unable to open database file" without a path at start.
 */
function checkDirectories(c: Partial<Config>, valid: (...keys: ConfigKey[]) => boolean, problems: string[]): void {
  if (valid('DATA_DIR') && c.DATA_DIR !== undefined) {
    const why = directoryProblem(c.DATA_DIR);
    if (why) problems.push(`DATA_DIR: ${quote(c.DATA_DIR)} ${why}; DATA_DIR holds the spool and must be a directory the node can write`);
  }
  const fileSinkOn = valid('FILE_SINK', 'PUBSUB_TOPIC', 'BIGQUERY_DATASET', 'BIGQUERY_TABLE') && c.FILE_SINK !== undefined && fileSinkEnabled(c as Config);
  if (fileSinkOn && valid('FILE_SINK_DIR', 'DATA_DIR') && c.FILE_SINK_DIR !== undefined && c.FILE_SINK_DIR !== path.join(c.DATA_DIR ?? '', 'out')) {
    const why = directoryProblem(c.FILE_SINK_DIR);
    if (why) problems.push(`FILE_SINK_DIR: ${quote(c.FILE_SINK_DIR)} ${why}; the file sink writes its NDJSON files there`);
  }
}

/** Why `dir` cannot be used as a writable directory (it or the first existing folder above it), or undefined. */
export function directoryProblem(dir: string): string | undefined {
  const target = path.resolve(dir);
  let existing = target;
  for (;;) {
    try {
      const st = statSync(existing);
      if (!st.isDirectory()) {
        return existing === target ? 'is a file, not a directory' : `cannot be created: ${quote(existing)} is a file, not a directory`;
      }
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const parent = path.dirname(existing);
      // ENOTDIR: a folder above is a file; the walk up finds it and says so.
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || parent === existing) return `cannot be checked (${fsReason(err)})`;
      existing = parent;
    }
  }
  try {
    accessSync(existing, fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const where = existing === target ? 'it' : `${quote(existing)}, where it would be created,`;
    if (code === 'EROFS') return `cannot be written: ${where} is on a read-only file system`;
    if (code === 'EACCES' || code === 'EPERM') {
      return `cannot be written: ${where} is not writable by this user (uid ${process.getuid?.() ?? '?'})`;
    }
    return `cannot be written (${fsReason(err)})`;
  }
  return undefined;
}

/**
 * GOOGLE_APPLICATION_CREDENTIALS is read by Google's client libraries, not by the schema: a path that names no
 * readable credentials file would only show as failing sinks once the node runs.
 */
function checkGoogleCredentials(
  c: Partial<Config>,
  { env, usesSecretManager, credentialsAtRun }: RuleContext,
  valid: (...keys: ConfigKey[]) => boolean,
  problems: string[],
  warnings: string[],
): void {
  const file = env.GOOGLE_APPLICATION_CREDENTIALS;
  if (isUnset(file) || typeof file !== 'string') return;
  let why: string | undefined;
  try {
    const st = statSync(file);
    if (!st.isFile()) why = 'is not a file';
    else {
      const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || typeof (parsed as { type?: unknown }).type !== 'string') {
        why = 'is not a Google credentials file (a JSON object with a "type")';
      }
    }
  } catch (err) {
    why = err instanceof SyntaxError ? 'is not a Google credentials file (not JSON)' : `cannot be read (${fsReason(err)})`;
  }
  if (why === undefined) return;
  const used = usesSecretManager || (valid('PUBSUB_TOPIC', 'BIGQUERY_DATASET', 'BIGQUERY_TABLE') && hasCloudSink(c as Config));
  const text =
    `GOOGLE_APPLICATION_CREDENTIALS: ${quote(file)} ${why}; point it at a service account key file, or unset it to use ` +
    'the attached service account (App Engine, GKE Workload Identity) or `gcloud auth application-default login`';
  if (used && credentialsAtRun) warnings.push(`${text}; until then the cloud sinks fail and messages wait in the spool`);
  else if (used) problems.push(text);
  else warnings.push(`${text} (no cloud sink or sm:// reference uses it yet)`);
}

/** The BigQuery sink needs its dataset and table together, a project, and one endpoint setting at most. */
function checkBigQueryRules(
  c: Partial<Config>,
  sources: Record<ConfigKey, ConfigSource>,
  valid: (...keys: ConfigKey[]) => boolean,
  problems: string[],
  warnings: string[],
): void {
  if (valid('APP_ENV', 'BIGQUERY_DATASET', 'BIGQUERY_TABLE', 'BIGQUERY_LOCATION') && bigquerySinkEnabled(c as Config) && sources.BIGQUERY_LOCATION === 'default') {
    // dev keeps the default quietly: test setups and local BigQuery stand-ins would otherwise always warn.
    if (c.APP_ENV !== 'dev') {
      problems.push(
        `BIGQUERY_LOCATION: must be set explicitly in ${c.APP_ENV} while the BigQuery sink is on (the default ` +
          `${quote(c.BIGQUERY_LOCATION ?? 'US')} would create the dataset in the United States); set it to where the ` +
          'data may live (e.g. europe-west1 or EU)',
      );
    }
  }
  if (valid('BIGQUERY_DATASET', 'BIGQUERY_TABLE')) {
    if ((c.BIGQUERY_DATASET === undefined) !== (c.BIGQUERY_TABLE === undefined)) {
      const [set, unset] = c.BIGQUERY_DATASET === undefined ? ['BIGQUERY_TABLE', 'BIGQUERY_DATASET'] : ['BIGQUERY_DATASET', 'BIGQUERY_TABLE'];
      problems.push(`${unset}: is unset but ${set} is set; the BigQuery sink needs both (or neither)`);
    }
  }
  const enabled = c.BIGQUERY_DATASET !== undefined || c.BIGQUERY_TABLE !== undefined;
  if (enabled && valid('GCP_PROJECT_ID') && c.GCP_PROJECT_ID === undefined) {
    problems.push('GCP_PROJECT_ID: is unset but the BigQuery sink (BIGQUERY_DATASET, BIGQUERY_TABLE) needs the project of its dataset');
  }
  if (valid('BIGQUERY_API_ENDPOINT', 'BIGQUERY_EMULATOR_HOST') && c.BIGQUERY_API_ENDPOINT !== undefined && c.BIGQUERY_EMULATOR_HOST !== undefined) {
    problems.push(
      'BIGQUERY_EMULATOR_HOST: is set together with BIGQUERY_API_ENDPOINT; set only one (the emulator host is a full base URL, the endpoint a host URL)',
    );
  }
  if (valid('BIGQUERY_EMULATOR_HOST') && c.BIGQUERY_EMULATOR_HOST !== undefined && !/\/bigquery\/v2\/?$/.test(c.BIGQUERY_EMULATOR_HOST)) {
    warnings.push(
      `BIGQUERY_EMULATOR_HOST: ${show(c.BIGQUERY_EMULATOR_HOST)} does not end in /bigquery/v2; it is used as the full base URL, as ` +
        "Google's client does, so requests go to …/projects/… right under it. For a host URL use BIGQUERY_API_ENDPOINT",
    );
  }
}
