/**
 * The node-wide keys, which several components read: the deployment environment, the data folder, the Google
 * Cloud project and the log level. Each is a section of its own so that the composition can list it where the
 * docs always have (APP_ENV first, DATA_DIR before the spool, GCP_PROJECT_ID before the cloud sinks).
 */
import { key } from './key.js';
import { oneOf, text } from './fields.js';
import { directoryProblem } from './directory.js';
import { quote } from './text.js';
import type { Section, Values } from './section.js';

const environmentKeys = {
  APP_ENV: key(oneOf(['dev', 'pprd', 'prd']), {
    default: 'dev',
    description: 'The deployment environment. `pprd` and `prd` get stricter broker-security checks.',
  }),
};

const dataDirKeys = {
  DATA_DIR: key(text('a directory path'), {
    default: './data',
    description: 'Directory for the spool, broker persistence and file sink output.',
  }),
};

const gcpProjectKeys = {
  GCP_PROJECT_ID: key(text('a Google Cloud project id', { test: (v) => /^[^\s/]+$/.test(v) }), {
    description: 'Google Cloud project for Pub/Sub and BigQuery.',
  }),
};

const logKeys = {
  LOG_LEVEL: key(oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), {
    default: 'info',
    description: 'Lowest level of log lines written.',
  }),
};

export type EnvironmentConfig = Values<typeof environmentKeys>;
export type DataDirConfig = Values<typeof dataDirKeys>;
export type GcpProjectConfig = Values<typeof gcpProjectKeys>;
export type LogConfig = Values<typeof logKeys>;
export type NodeConfig = EnvironmentConfig & DataDirConfig & GcpProjectConfig & LogConfig;

export const environmentSection = { keys: environmentKeys } satisfies Section<EnvironmentConfig>;

/**
 * DATA_DIR (spool, broker persistence) must be a directory this user may write, or creatable: found here rather
 * than as an ENOTDIR or "unable to open database file" without a path at start.
 */
export const dataDirSection = {
  keys: dataDirKeys,
  rules(c, valid, problems) {
    if (valid('DATA_DIR') && c.DATA_DIR !== undefined) {
      const why = directoryProblem(c.DATA_DIR);
      if (why) problems.push(`DATA_DIR: ${quote(c.DATA_DIR)} ${why}; DATA_DIR holds the spool and must be a directory the node can write`);
    }
  },
} satisfies Section<DataDirConfig>;

export const gcpProjectSection = { keys: gcpProjectKeys } satisfies Section<GcpProjectConfig>;

export const logSection = { keys: logKeys } satisfies Section<LogConfig>;
