/**
 * Which sinks a configuration turns on, and the sinks themselves, built from their sections' options. The order
 * is Pub/Sub, BigQuery, file: `run` builds them so, and the spool routes each new message to these sinks.
 */
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { SinkName } from '../core/message.js';
import type { GcpProjectConfig } from '../core/settings/node.js';
import { bigquerySinkEnabled, bigquerySinkOptions, type BigQueryConfig } from './bigquery/config.js';
import { BigQuerySink } from './bigquery/bigquery-sink.js';
import { fileSinkEnabled, fileSinkOptions, type FileSinkConfig } from './file/config.js';
import { FileSink } from './file/file-sink.js';
import { pubsubSinkOptions, pubsubTopic, type PubsubConfig } from './pubsub/config.js';
import { PubSubSink } from './pubsub/pubsub-sink.js';
import type { Sink } from './sink.js';
import type { RouteTable } from './bigquery/table-check.js';

export { bigquerySinkEnabled } from './bigquery/config.js';
export { fileSinkEnabled, hasCloudSink } from './file/config.js';
export { pubsubTopic } from './pubsub/config.js';

/**
 * What the routes (ROUTES_FILE) ask of the sinks beyond the configuration, as plain data (src/routes/destinations.ts
 * builds it): the typed tables to check at start, whether the raw table still takes anything, and whether Pub/Sub
 * publishes carry route ordering keys. Unset: no routes file.
 */
export interface SinkRouting {
  /** Every route's table in BIGQUERY_DATASET, with the shape of its rows. */
  bigqueryTables: RouteTable[];
  /** False when `unmatched` is not raw: no message goes to the raw table, which is then neither checked nor created. */
  rawTable: boolean;
  /** Some route sets an ordering key: publishes go one at a time, in spool order (as with PUBSUB_ORDERING_KEY). */
  pubsubOrdered: boolean;
  /** Every route's Pub/Sub topic, `projects/P/topics/T` (for `provision`). */
  pubsubTopics: string[];
}

/** What the sinks read from the configuration. */
export type SinksConfig = PubsubConfig & BigQueryConfig & FileSinkConfig & GcpProjectConfig;

/** The sinks this configuration enables, in the order `buildSinks` makes them. */
export function enabledSinks(c: SinksConfig): SinkName[] {
  const sinks: SinkName[] = [];
  if (pubsubTopic(c)) sinks.push('pubsub');
  if (bigquerySinkEnabled(c)) sinks.push('bigquery');
  if (fileSinkEnabled(c)) sinks.push('file');
  return sinks;
}

/** The enabled sinks, not yet started. `dataDir` is DATA_DIR resolved (the file sink's default folder is under it). */
export function buildSinks(c: SinksConfig, dataDir: string, logger: Logger, metrics?: Metrics, routing?: SinkRouting): Sink[] {
  const sinks: Sink[] = [];
  const pubsub = pubsubSinkOptions(c);
  if (pubsub) {
    const routeOrdering = routing?.pubsubOrdered === true;
    const topics = new Set(routing?.pubsubTopics ?? []);
    if (!routing || routing.rawTable) topics.add(pubsub.topic); // unmatched: raw publishes to PUBSUB_TOPIC
    sinks.push(new PubSubSink({ ...pubsub, routeOrdering, routeTopics: topics.size, logger: logger.child({ component: 'sink.pubsub' }), metrics }));
  }
  // Its own SinkRunner: BigQuery and Pub/Sub progress independently; a spool row leaves when both are done.
  const bigquery = bigquerySinkOptions(c);
  if (bigquery) {
    const tables = routing ? { routeTables: routing.bigqueryTables, rawTable: routing.rawTable } : {};
    sinks.push(new BigQuerySink({ ...bigquery, ...tables, logger: logger.child({ component: 'sink.bigquery' }) }));
  }
  const file = fileSinkOptions(c, dataDir);
  if (file) sinks.push(new FileSink({ ...file, logger: logger.child({ component: 'sink.file' }) }));
  return sinks;
}

/** Where each enabled sink writes, in words an operator recognises; never a credential. */
export function sinkDestinations(c: SinksConfig): Record<string, string> {
  const out: Record<string, string> = {};
  for (const sink of enabledSinks(c)) {
    if (sink === 'pubsub') out.pubsub = `projects/${c.GCP_PROJECT_ID ?? '?'}/topics/${c.PUBSUB_TOPIC ?? '?'}`;
    else if (sink === 'bigquery') out.bigquery = `${c.GCP_PROJECT_ID ?? '?'}.${c.BIGQUERY_DATASET ?? '?'}.${c.BIGQUERY_TABLE ?? '?'}`;
    else if (sink === 'file') out.file = c.FILE_SINK_DIR;
    else out[sink] = 'on';
  }
  return out;
}
