/**
 * Rules across keys, run once every key has parsed; each runs only when the keys it reads are valid, so one
 * mistake is not reported twice.
 */
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { checkBrokerSecurity } from '../intake/security/policy.js';
import type { Config, ConfigSource } from './load.js';
import { PUBSUB_TOPIC_PATH, type ConfigKey } from './schema.js';
import { bigquerySinkEnabled, fileSinkEnabled, hasCloudSink } from './sinks.js';
import { fsReason, isUnset, quote, show } from './text.js';

/** What some rules read besides the values: where each came from, the raw environment, sm:// references. */
export interface RuleContext {
  sources: Record<ConfigKey, ConfigSource>;
  env: NodeJS.ProcessEnv;
  usesSecretManager: boolean;
  credentialsAtRun: boolean;
}

export function checkRules(
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
