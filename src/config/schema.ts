/**
 * The configuration schema: the components' sections, composed in the order the docs and `check-config` list
 * their keys. Each section lives beside its component and holds that component's keys (type, default,
 * description, secret flag), its rules across them and its derived defaults; `load.ts` parses and checks every
 * key with them and `docs.ts` renders docs/configuration.md from the same keys, so nothing is described twice.
 */
import type { z } from 'zod';
import { settingsRegistry, type KeyMeta } from '../core/settings/key.js';
import {
  dataDirSection,
  environmentSection,
  gcpProjectSection,
  logSection,
  type NodeConfig,
} from '../core/settings/node.js';
import type { Section } from '../core/settings/section.js';
import { dispatchSection, type DispatchConfig } from '../dispatch/config.js';
import { httpSection, type HttpConfig } from '../http/config.js';
import { intakeSection, type IntakeConfig } from '../intake/config.js';
import { ownBrokerSection, type OwnBrokerConfig } from '../intake/security/config.js';
import { bigquerySection, type BigQueryConfig } from '../sinks/bigquery/config.js';
import { fileSinkSection, type FileSinkConfig } from '../sinks/file/config.js';
import { pubsubSection, type PubsubConfig } from '../sinks/pubsub/config.js';
import { routesSection, type RoutesConfig } from '../routes/config.js';
import { sparkplugSection, type SparkplugConfig } from '../sparkplug/config.js';
import { spoolSection, type SpoolConfig } from '../spool/config.js';
import { sourcesSection, type SourcesConfig } from '../sources/config.js';
import { secretManagerSection, type SecretManagerConfig } from './secret-manager.js';

/** Every section, in docs order; their rules run in this order too. */
const COMPOSED = [
  environmentSection,
  intakeSection,
  ownBrokerSection,
  httpSection,
  dataDirSection,
  spoolSection,
  gcpProjectSection,
  pubsubSection,
  secretManagerSection,
  bigquerySection,
  fileSinkSection,
  routesSection,
  sparkplugSection,
  dispatchSection,
  sourcesSection,
  logSection,
] as const;

export const SECTIONS: readonly Section[] = COMPOSED;

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The typed configuration: every section's values, derived defaults filled (MQTT_CLIENT_ID, FILE_SINK_DIR, …). */
export type Config = Simplify<
  NodeConfig &
    IntakeConfig &
    OwnBrokerConfig &
    HttpConfig &
    SpoolConfig &
    PubsubConfig &
    SecretManagerConfig &
    BigQueryConfig &
    FileSinkConfig &
    RoutesConfig &
    SparkplugConfig &
    DispatchConfig &
    SourcesConfig
>;

export type ConfigKey = keyof Config & string;

// The sections composed and the types of Config name the same keys, or this does not compile.
type KeysOf<S> = S extends { keys: infer K } ? keyof K : never;
type ComposedKey = KeysOf<(typeof COMPOSED)[number]>;
const sameKeys: [Exclude<ComposedKey, ConfigKey> | Exclude<ConfigKey, ComposedKey>] extends [never] ? true : never = true;
void sameKeys;

/** Each key's schema, in docs order. */
export const CONFIG_SHAPE = {} as Record<ConfigKey, z.ZodType>;
for (const section of SECTIONS) {
  for (const [name, schema] of Object.entries(section.keys)) {
    if (Object.hasOwn(CONFIG_SHAPE, name)) throw new Error(`config key ${name} is declared by two sections`);
    CONFIG_SHAPE[name as ConfigKey] = schema;
  }
}

/** Every key, in docs order. */
export const CONFIG_KEYS = Object.keys(CONFIG_SHAPE) as ConfigKey[];

/**
 * Environment variables start with one of these when they are meant for the node; an unknown one is a typo or a
 * stale name and earns a warning (the environment holds many unrelated variables, so other names are not read).
 */
export const ENV_PREFIXES = [
  'MQTT_', 'PUBSUB_', 'BIGQUERY_', 'SPOOL_', 'FILE_SINK', 'HTTP_', 'RETRY_', 'SHUTDOWN_', 'MOSQUITTO_',
  'SECRET_MANAGER_', 'ROUTES_', 'SPARKPLUG_', 'SOURCES_', 'SILENT_',
] as const;

/** Names with those prefixes that are known although they are no config key: read by tools and commands. */
export const OTHER_KNOWN_ENV = new Set<string>([]);

/** Names the old Python deployment used that mean something else here (docs/operations.md, "Migrating"). */
export const LEGACY_ENV: Record<string, string> = {
  MQTT_TOPIC:
    'is the old deployment\'s name for its one topic filter and is not read here: the node subscribes to MQTT_TOPICS ' +
    '(comma-separated filters; its default "#" takes every topic). Move the value to MQTT_TOPICS',
};

export function isConfigKey(name: string): name is ConfigKey {
  return Object.hasOwn(CONFIG_SHAPE, name);
}

export function keyMeta(name: ConfigKey): KeyMeta {
  const meta = settingsRegistry.get(CONFIG_SHAPE[name]);
  if (!meta) throw new Error(`config key ${name} has no metadata`); // a section key made without key()
  return meta;
}
