/**
 * The configuration schema: the single source of every key's type, default, description and secret flag.
 *
 * Keys are the environment variable names, and a YAML config file uses the same flat keys. Each key is a zod
 * schema registered in `configRegistry` with its metadata; `load.ts` parses values with these schemas and
 * `docs.ts` renders docs/configuration.md from the same registry, so nothing is described twice.
 *
 * Values arrive as strings from the environment and as strings, numbers or booleans from YAML, so every key
 * schema accepts `unknown` input and reads it the same way whichever layer it came from. Defaults are written
 * in their environment form (`'6GiB'`, `'1883'`) and parsed like a given value (zod `prefault`), so the default
 * the docs show is exactly the one that is used.
 */
import { z } from 'zod';
import { KiB, MiB, PUBSUB_TOPIC_NAME, PUBSUB_TOPIC_PATH, bigqueryDataset, bigqueryTable, boolean, byteSize, clientId, emulatorHost, fileSinkSwitch, isBrokerUrl, oneOf, protocolVersion, text, topicFilters, wholeNumber, type EnvType, type Field } from './fields.js';

export { BOOLEAN_PAIRS, parseByteSize, PUBSUB_TOPIC_NAME, PUBSUB_TOPIC_PATH, type EnvType } from './fields.js';
export { topicFilterProblem } from '../core/mqtt-topic.js';

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

export const configRegistry = z.registry<KeyMeta>();


type KeyInfo = Pick<KeyMeta, 'description' | 'secret' | 'derivedDefault' | 'file'>;

function key<S extends z.ZodType>(field: Field<S>, info: KeyInfo & { default: string }): z.ZodPrefault<S>;
function key<S extends z.ZodType>(field: Field<S>, info: KeyInfo): z.ZodOptional<S>;
function key<S extends z.ZodType>(field: Field<S>, info: KeyInfo & { default?: string }): z.ZodType {
  const { schema, ...rest } = field;
  // Every field schema takes `unknown` input (preprocess or string), so a string default is a valid input.
  const wrapped = info.default === undefined ? schema.optional() : schema.prefault(info.default as z.input<S>);
  return wrapped.register(configRegistry, { ...rest, ...info });
}

// ---- the keys, in the order the docs and `check-config` list them

export const configSchema = z.strictObject({
  APP_ENV: key(oneOf(['dev', 'pprd', 'prd']), {
    default: 'dev',
    description: 'The deployment environment. `pprd` and `prd` get stricter broker-security checks.',
  }),
  MQTT_BROKER: key(
    text('a URL with scheme `mqtt`, `mqtts`, `tcp`, `ssl`, `ws` or `wss` (e.g. `mqtts://broker.example.com:8883`)', {
      test: isBrokerUrl,
      envType: 'url',
    }),
    {
      description:
        'URL of an external broker to subscribe to. When set (with `MQTT_BROKER_MODE=auto`) the node starts no broker ' +
        'of its own. A loopback URL earns a warning: the old Python deployment pointed this at the in-container broker; ' +
        'here leave it unset and the node runs its own.',
    },
  ),
  MQTT_BROKER_MODE: key(oneOf(['auto', 'mosquitto', 'embedded', 'external']), {
    default: 'auto',
    description:
      'Which broker to use. `auto`: the external one when `MQTT_BROKER` is set, else Mosquitto when `MOSQUITTO_BIN` ' +
      'is found on `PATH` at start, else the embedded broker. `mosquitto` supervises a Mosquitto child process, ' +
      '`embedded` runs a broker in-process, `external` requires `MQTT_BROKER`.',
  }),
  MQTT_HOST: key(text('a host name or IP address'), {
    default: '0.0.0.0',
    description: "Address the node's own broker listens on.",
  }),
  MQTT_PORT: key(wholeNumber(1, 65535), {
    default: '1883',
    description: "Port the node's own broker listens on.",
  }),
  MQTT_TOPICS: key(topicFilters, {
    default: '#',
    description:
      'Topic filters to subscribe to, comma-separated (a YAML list works too). `+` and `#` wildcards must fill ' +
      'a whole level; `$share/<group>/<filter>` makes a shared subscription.',
  }),
  MQTT_CLIENT_ID: key(clientId, {
    derivedDefault: '`mqtt-ingest-<hostname>-<APP_ENV>`',
    description:
      "The subscriber's client id. It must stay the same across restarts, or the broker's persistent session (and " +
      'the messages queued in it) is lost. The default uses the host name with characters other than ' +
      '`A-Z a-z 0-9 _ -` replaced by `-`; set it explicitly where the host name changes on every start.',
  }),
  MQTT_USERNAME: key(text('text'), {
    description:
      "The subscriber's user name on an external broker. With its own broker the node makes an internal credential.",
  }),
  MQTT_PASSWORD: key(text('text'), {
    secret: true,
    description: "The subscriber's password on an external broker.",
  }),
  MQTT_PROTOCOL_VERSION: key(protocolVersion, {
    default: '5',
    description: 'MQTT protocol version the subscriber speaks.',
  }),
  MQTT_SESSION_EXPIRY_SECONDS: key(wholeNumber(0, 4294967295), {
    default: '604800',
    description:
      "How long the broker keeps the subscriber's session, and queues its QoS 1 messages, while the node is down " +
      '(MQTT 5 Session Expiry Interval; 604800 is 7 days).',
  }),
  MQTT_KEEPALIVE_SECONDS: key(wholeNumber(5, 65535), {
    default: '30',
    description: "The subscriber's keep-alive interval.",
  }),
  // ---- the node's own broker: listeners, TLS, users and limits (docs/security.md); ignored with an external broker
  MQTT_TLS_PORT: key(wholeNumber(1, 65535), {
    default: '8883',
    description: 'Port of the TLS listener, which is on when `MQTT_TLS_CERT` and `MQTT_TLS_KEY` are set.',
  }),
  MQTT_TLS_CERT: key(text('a file path'), {
    file: true,
    description: "PEM file with the broker's certificate chain, server certificate first.",
  }),
  MQTT_TLS_KEY: key(text('a file path'), {
    file: true,
    description: 'PEM file with the private key of the server certificate (unencrypted).',
  }),
  MQTT_TLS_CA: key(text('a file path'), {
    file: true,
    description: 'PEM bundle of the certificate authorities that sign client certificates (for `MQTT_TLS_REQUIRE_CLIENT_CERT`).',
  }),
  MQTT_TLS_REQUIRE_CLIENT_CERT: key(boolean(), {
    default: 'false',
    description:
      'mTLS: the TLS (and secure WebSocket) listener refuses clients without a certificate signed by `MQTT_TLS_CA`. ' +
      "Without `MQTT_AUTH_FILE` the certificate's Common Name is the client's user name (for the ACL); with it, " +
      'clients need both the certificate and a password.',
  }),
  MQTT_PLAINTEXT: key(boolean(), {
    derivedDefault: '`on` in dev, `off` in pprd and prd',
    description: 'The plaintext MQTT listener on `MQTT_PORT`.',
  }),
  MQTT_WS_PORT: key(wholeNumber(1, 65535), {
    description: 'Port of an MQTT over WebSockets listener (secure WebSockets when `MQTT_TLS_CERT` and `MQTT_TLS_KEY` are set). Unset: off.',
  }),
  MQTT_AUTH_FILE: key(text('a file path'), {
    file: true,
    description:
      'Mosquitto-format password file (`user:$7$…` lines, written by `mqtt-ingest passwd` or `mosquitto_passwd`). ' +
      'Reloaded on SIGHUP.',
  }),
  MQTT_ACL_FILE: key(text('a file path'), {
    file: true,
    description:
      'Mosquitto-format ACL file (`user`, `topic read|write|readwrite|deny`, `pattern` with `%u`/`%c`). Reloaded on SIGHUP.',
  }),
  MQTT_ALLOW_ANONYMOUS: key(boolean(), {
    derivedDefault: '`true` in dev, `false` in pprd and prd',
    description: 'Accept clients that give no user name.',
  }),
  MQTT_ALLOW_INSECURE: key(boolean(), {
    default: 'false',
    description:
      'Let pprd and prd start with the plaintext listener, without TLS or with anonymous access (or, with an external ' +
      'broker, send `MQTT_USERNAME`/`MQTT_PASSWORD` over a plaintext `mqtt://` or `ws://` URL), with a warning at ' +
      'start and in the readiness JSON.',
  }),
  MQTT_MAX_PACKET_BYTES: key(byteSize(KiB, 268_435_455), {
    default: '1MiB',
    description:
      'Largest MQTT packet a client may send; a client sending a larger one is disconnected. Pub/Sub and BigQuery take ' +
      'at most 10 MB per message; MQTT allows 256 MiB.',
  }),
  MQTT_MAX_CONNECTIONS: key(wholeNumber(1, 1_000_000), {
    default: '10000',
    description:
      'Most client connections per listener; more are closed at once. Each takes a file descriptor: keep it under the ' +
      "process's open-file limit.",
  }),
  MQTT_MAX_CONNECT_BYTES: key(byteSize(KiB, 268_435_455), {
    default: '64KiB',
    description:
      'Embedded broker: largest first packet (the CONNECT, sent before any authentication); a client sending a larger ' +
      'one is disconnected. A CONNECT is usually well under 1 KiB; a 3.1.1 one can reach 256 KiB only with a will ' +
      'message, user name and password near their 64 KiB maximum each. `MQTT_MAX_PACKET_BYTES` applies if lower.',
  }),
  MQTT_MAX_PARTIAL_BYTES: key(byteSize(MiB), {
    default: '256MiB',
    description:
      'Embedded broker: most bytes of incomplete packets (received, not yet complete) held for all connections ' +
      'together; a connection whose incomplete packet would go past it is disconnected. Keep it at least ' +
      '`MQTT_MAX_PACKET_BYTES` and well under the memory of the instance (docs/security.md).',
  }),
  MQTT_PARTIAL_PACKET_TIMEOUT_SECONDS: key(wholeNumber(1, 3600), {
    default: '60',
    description:
      'Embedded broker: a connection whose incomplete packet receives no byte for this long is disconnected (with a ' +
      'keep-alive, also one that completes no packet within 1.5 × the keep-alive, MQTT-3.1.2-24).',
  }),
  MQTT_MAX_RETAINED_MESSAGES: key(wholeNumber(0, 100_000_000), {
    default: '50000',
    description:
      'Embedded broker: most retained messages it keeps (Aedes keeps them in the V8 heap, about 0.5 KiB each besides ' +
      'topic and payload). A retained message over the limit is still stored and delivered, but not kept as retained. ' +
      'Mosquitto 2.0.11 has no such limit.',
  }),
  MQTT_MAX_RETAINED_BYTES: key(byteSize(0), {
    default: '32MiB',
    description:
      'Embedded broker: most topic and payload bytes of the retained messages it keeps, as `MQTT_MAX_RETAINED_MESSAGES`.',
  }),
  MOSQUITTO_BIN: key(text('a command name or path'), {
    default: 'mosquitto',
    description: 'The Mosquitto executable, looked up on `PATH` unless it is a path.',
  }),
  PORT: key(wholeNumber(0, 65535), {
    default: '8080',
    description: 'HTTP port for health checks, metrics and the status page; `0` picks any free port.',
  }),
  HTTP_HOST: key(text('a host name or IP address'), {
    default: '0.0.0.0',
    description:
      'Address the HTTP server (health checks, metrics, status page) listens on. App Engine and Kubernetes probes ' +
      'need `0.0.0.0`; `127.0.0.1` keeps it to this host. What each endpoint reveals: docs/security.md.',
  }),
  DATA_DIR: key(text('a directory path'), {
    default: './data',
    description: 'Directory for the spool, broker persistence and file sink output.',
  }),
  SPOOL_MAX_BYTES: key(byteSize(MiB), {
    default: '6GiB',
    description:
      "Largest size of the spool. When full, the node stops acknowledging messages (back-pressure) and drops none. The default fits App Engine flex's 10 GB disk with room for the OS, the image, broker persistence and SQLite's write-ahead log.",
  }),
  SPOOL_MIN_FREE_BYTES: key(byteSize(MiB), {
    default: '256MiB',
    description:
      "Free disk the spool leaves on `DATA_DIR`'s file system. A commit that would leave less waits, and the node stops " +
      'acknowledging (back-pressure, readiness 503 with `spool.fullReason` "disk: …") until there is room; free pages ' +
      'inside `spool.db`, which new messages reuse, count as free. The default, about 2.5% of App Engine flex\'s 10 GB ' +
      "disk, holds SQLite's write-ahead log (about 4 MiB, plus one group commit of up to 64 MiB) several times over and " +
      "leaves Mosquitto's database, the logs and the `dlq` commands room to write. Lower it on a small volume: a file " +
      'system no larger than it never takes a message.',
  }),
  SPOOL_SYNC: key(oneOf(['full', 'normal']), {
    default: 'full',
    description:
      '`full`: every spool commit is fsync\'ed before the broker is acknowledged, so an acknowledged message survives power loss. ' +
      '`normal`: it survives a crash or SIGKILL of the process but not of the machine; faster where commits are small.',
  }),
  SPOOL_ACCEPT_LOSS: key(boolean(), {
    default: 'false',
    description:
      'For one start after the spool was damaged (its write-ahead log deleted or truncated, `spool.db` emptied or ' +
      'restored from an older copy): start with what remains instead of refusing with `SPOOL_DAMAGED`. The loss is ' +
      'logged and the damaged log kept aside as `spool.db-wal.damaged-<time>`. Set it back to `false` afterwards, or ' +
      'a later loss would start with only a warning (docs/operations.md).',
  }),
  GCP_PROJECT_ID: key(text('a Google Cloud project id', { test: (v) => /^[^\s/]+$/.test(v) }), {
    description: 'Google Cloud project for Pub/Sub and BigQuery.',
  }),
  PUBSUB_TOPIC: key(
    text('a Pub/Sub topic id, or a path `projects/PROJECT/topics/TOPIC`', {
      test: (v) => PUBSUB_TOPIC_NAME.test(v) || PUBSUB_TOPIC_PATH.test(v),
    }),
    {
      description:
        'Enables the Pub/Sub sink. A bare topic id is taken in `GCP_PROJECT_ID`; a full path names its own project.',
    },
  ),
  PUBSUB_EMULATOR_HOST: key(emulatorHost, {
    description: "Address of a Pub/Sub emulator, honoured as Google's client does.",
  }),
  PUBSUB_BATCH_MAX_MESSAGES: key(wholeNumber(1, 1000), {
    default: '1000',
    description: 'Most messages in one batch handed to Pub/Sub, sent as one publish request (the API allows 1000).',
  }),
  PUBSUB_BATCH_MAX_BYTES: key(byteSize(1, 9_000_000), {
    default: '9000000',
    description:
      'Most payload bytes in one batch handed to Pub/Sub. A batch whose payloads and attributes pass 9 MiB goes as ' +
      "more than one request (the API's limit is 10 MB per request).",
  }),
  PUBSUB_MAX_IN_FLIGHT: key(wholeNumber(1, 64), {
    default: '4',
    description: 'Most batches being published to Pub/Sub at once (1 while `PUBSUB_ORDERING_KEY` is set).',
  }),
  PUBSUB_ORDERING_KEY: key(oneOf(['none', 'mqtt_topic']), {
    default: 'none',
    description:
      '`mqtt_topic`: each message carries its MQTT topic as its Pub/Sub ordering key, so a subscription with message ' +
      'ordering enabled receives the messages of each MQTT topic in the order the node received them. Publishes then ' +
      'go one at a time, in spool order, and a failed one is retried before anything after it.',
  }),
  SECRET_MANAGER_API_ENDPOINT: key(
    text('an `http://` or `https://` URL without a path (e.g. `https://secretmanager.europe-west1.rep.googleapis.com`)', {
      test: (v) => /^https?:\/\/[^\s/?#]+\/?$/.test(v),
      envType: 'url',
    }),
    {
      description:
        'Where `run` resolves `sm://` references (see docs/operations.md). Unset: Google\'s global endpoint. An ' +
        '`https://` URL names a regional endpoint; an `http://` URL is a local stand-in, called without credentials.',
    },
  ),
  BIGQUERY_DATASET: key(bigqueryDataset, {
    description:
      'With `BIGQUERY_TABLE`, enables the BigQuery sink: the dataset of the raw table, in `GCP_PROJECT_ID` (see docs/bigquery.md).',
  }),
  BIGQUERY_TABLE: key(bigqueryTable, {
    description: 'With `BIGQUERY_DATASET`, enables the BigQuery sink: the raw table rows are streamed into (schema in docs/bigquery.md).',
  }),
  BIGQUERY_LOCATION: key(text('a BigQuery location such as `US`, `EU` or `europe-west1`'), {
    default: 'US',
    description:
      'Location of a dataset the node or `provision` creates (see `BIGQUERY_AUTO_CREATE`); an existing dataset keeps ' +
      'its own. In pprd and prd it must be set explicitly whenever the BigQuery sink is on, so that data cannot land ' +
      'in another jurisdiction by default.',
  }),
  BIGQUERY_AUTO_CREATE: key(boolean(), {
    default: 'on',
    description:
      'At start, create the dataset and the raw table when they are missing. Off: a missing table stops the start ' +
      '(an operator creates it with `mqtt-ingest provision`). Either way, an existing table whose columns do not fit stops the start.',
  }),
  BIGQUERY_API_ENDPOINT: key(
    text('an `http://` or `https://` URL without a path (e.g. `http://127.0.0.1:9050`)', {
      test: (v) => /^https?:\/\/[^\s/?#]+\/?$/.test(v),
      envType: 'url',
    }),
    {
      derivedDefault: "Google's (`https://bigquery.googleapis.com`)",
      description:
        'A BigQuery-compatible host URL, for tests; the client appends `/bigquery/v2`. No credentials are sent to an `http://` URL.',
    },
  ),
  BIGQUERY_EMULATOR_HOST: key(
    text('an `http://` or `https://` URL (e.g. `http://127.0.0.1:9050/bigquery/v2`)', {
      test: (v) => /^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/.test(v),
      envType: 'url',
    }),
    {
      description:
        "Honoured as Google's client reads it: the full base URL, `/bigquery/v2` included. Set this or `BIGQUERY_API_ENDPOINT`, not both.",
    },
  ),
  BIGQUERY_BATCH_MAX_ROWS: key(wholeNumber(1, 50_000), {
    default: '500',
    description: 'Most rows in one BigQuery insertAll request (Google recommends 500; the API allows 50,000).',
  }),
  BIGQUERY_BATCH_MAX_BYTES: key(byteSize(KiB, 10_000_000), {
    default: '9000000',
    description:
      "Largest insertAll request body, under BigQuery's 10 MB request limit: a batch is sent as several requests when its rows " +
      'encode to more. A single row too large for any request is dead-lettered with reason `too_large`.',
  }),
  BIGQUERY_MAX_IN_FLIGHT: key(wholeNumber(1, 64), {
    default: '4',
    description: 'Most BigQuery insertAll requests outstanding at once.',
  }),
  FILE_SINK: key(fileSinkSwitch, {
    default: 'auto',
    description:
      'The file sink (NDJSON files). `auto`: on only when no cloud sink is configured. With no sink at all the ' +
      'node spools and counts only, with a warning.',
  }),
  FILE_SINK_DIR: key(text('a directory path'), {
    derivedDefault: '`<DATA_DIR>/out`',
    description: 'Directory the file sink writes to.',
  }),
  FILE_SINK_ROTATE_BYTES: key(byteSize(KiB), {
    default: '64MiB',
    description: 'Size at which the file sink starts a new file.',
  }),
  RETRY_INITIAL_DELAY_MS: key(wholeNumber(1, 600_000), {
    default: '500',
    description: 'First delay before a failed delivery is retried; it doubles on each failure.',
  }),
  RETRY_MAX_DELAY_MS: key(wholeNumber(1, 3_600_000), {
    default: '30000',
    description: 'Longest delay between delivery retries; at least `RETRY_INITIAL_DELAY_MS`.',
  }),
  SHUTDOWN_TIMEOUT_MS: key(wholeNumber(100, 60_000), {
    default: '8000',
    description: 'How long SIGTERM waits for in-flight batches before the node closes the spool and exits.',
  }),
  LOG_LEVEL: key(oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), {
    default: 'info',
    description: 'Lowest level of log lines written.',
  }),
});

export type ConfigKey = keyof typeof configSchema.shape;

/**
 * Environment variables start with one of these when they are meant for the node; an unknown one is a typo or a
 * stale name and earns a warning (the environment holds many unrelated variables, so other names are not read).
 */
export const ENV_PREFIXES = [
  'MQTT_', 'PUBSUB_', 'BIGQUERY_', 'SPOOL_', 'FILE_SINK', 'HTTP_', 'RETRY_', 'SHUTDOWN_', 'MOSQUITTO_',
  'SECRET_MANAGER_', 'ROUTES_', 'SPARKPLUG_',
] as const;

/** Names with those prefixes that are known although they are no config key: read by tools and commands. */
export const OTHER_KNOWN_ENV = new Set<string>([]);

/** Names the old Python deployment used that mean something else here (docs/operations.md, "Migrating"). */
export const LEGACY_ENV: Record<string, string> = {
  MQTT_TOPIC:
    'is the old deployment\'s name for its one topic filter and is not read here: the node subscribes to MQTT_TOPICS ' +
    '(comma-separated filters; its default "#" takes every topic). Move the value to MQTT_TOPICS',
};

/** Every key, in schema order. */
export const CONFIG_KEYS = Object.keys(configSchema.shape) as ConfigKey[];

export function isConfigKey(name: string): name is ConfigKey {
  return Object.hasOwn(configSchema.shape, name);
}

export function keyMeta(name: ConfigKey): KeyMeta {
  const meta = configRegistry.get(configSchema.shape[name]);
  if (!meta) throw new Error(`config key ${name} has no metadata`); // a schema edit that skipped key()
  return meta;
}
