/**
 * ROUTES_FILE: the routes file, read and checked with the rest of the configuration, so that `check-config`
 * and a start list its problems beside every other. Unset, every message goes where it always has.
 */
import path from 'node:path';
import { ConfigError } from '../core/errors.js';
import { text } from '../core/settings/fields.js';
import { key, looksLikeSecretRef } from '../core/settings/key.js';
import type { GcpProjectConfig } from '../core/settings/node.js';
import type { Section, Valid, Values } from '../core/settings/section.js';
import { quote } from '../core/settings/text.js';
import { bigquerySinkEnabled, type BigQueryConfig } from '../sinks/bigquery/config.js';
import { fileSinkEnabled, type CloudSinkSwitches, type FileSinkConfig } from '../sinks/file/config.js';
import { pubsubTopic, type PubsubConfig } from '../sinks/pubsub/config.js';
import { describeProblem, readRoutesFile, type RoutesContext } from './routes-file.js';
import type { RoutesTable } from './types.js';

const routesKeys = {
  ROUTES_FILE: key(text('a file path'), {
    description:
      'A YAML routes file (docs/routing.md): topic templates, typed fields, a Pub/Sub topic and a BigQuery table per ' +
      'route, and what happens to messages no route matches. Unset: every message goes to `PUBSUB_TOPIC` and the raw table.',
  }),
};

export type RoutesConfig = Values<typeof routesKeys>;

/** What the routes file is checked against: the sinks' keys. */
type RoutesRuleConfig = RoutesConfig & PubsubConfig & GcpProjectConfig & BigQueryConfig & FileSinkConfig & CloudSinkSwitches;

/** The sinks a route may use, from the configuration; a part whose keys have problems is left unknown. */
export function routesContext(c: Partial<RoutesRuleConfig>, valid: Valid<RoutesRuleConfig> = () => true): RoutesContext {
  const projectKnown = valid('GCP_PROJECT_ID');
  let pubsub: string | null | undefined;
  if (valid('PUBSUB_TOPIC', 'GCP_PROJECT_ID')) {
    const full = c.PUBSUB_TOPIC?.startsWith('projects/') === true;
    // A bare id without a project is the Pub/Sub section's problem; the routes do not repeat it.
    pubsub = c.PUBSUB_TOPIC === undefined ? null : full || c.GCP_PROJECT_ID !== undefined ? pubsubTopic(c)!.path : undefined;
  }
  const bigqueryKnown = valid('BIGQUERY_DATASET', 'BIGQUERY_TABLE');
  const switchesKnown = valid('FILE_SINK', 'PUBSUB_TOPIC', 'BIGQUERY_DATASET', 'BIGQUERY_TABLE') && c.FILE_SINK !== undefined;
  return {
    pubsubTopic: pubsub,
    gcpProjectId: projectKnown ? (c.GCP_PROJECT_ID ?? null) : undefined,
    bigqueryDataset: bigqueryKnown ? (bigquerySinkEnabled(c as BigQueryConfig) ? c.BIGQUERY_DATASET! : null) : undefined,
    bigqueryRawTable: bigqueryKnown ? c.BIGQUERY_TABLE : undefined,
    fileSink: switchesKnown ? fileSinkEnabled(c as RoutesRuleConfig) : undefined,
  };
}

/** The routes of a loaded configuration (whose rule already checked the file), or undefined when ROUTES_FILE is unset. */
export function loadRoutes(c: RoutesRuleConfig): RoutesTable | undefined {
  if (c.ROUTES_FILE === undefined) return undefined;
  const reading = readRoutesFile(path.resolve(c.ROUTES_FILE), routesContext(c));
  if (reading.table) return { ...reading.table, file: c.ROUTES_FILE };
  throw new ConfigError(reading.problems.map((p) => routesProblem(c.ROUTES_FILE!, describeProblem(p))));
}

function routesProblem(file: string, text: string): string {
  return `ROUTES_FILE: ${quote(file)} ${text}`;
}

export const routesSection = {
  keys: routesKeys,
  rules(c, valid, problems) {
    if (!valid('ROUTES_FILE') || c.ROUTES_FILE === undefined || looksLikeSecretRef(c.ROUTES_FILE)) return;
    const reading = readRoutesFile(path.resolve(c.ROUTES_FILE), routesContext(c, valid));
    for (const p of reading.problems) problems.push(routesProblem(c.ROUTES_FILE, describeProblem(p)));
  },
} satisfies Section<RoutesRuleConfig>;
