/** Which sinks a configuration turns on, and the Pub/Sub topic path: read by the loader's rules and the node. */
import type { Config } from './load.js';
import { PUBSUB_TOPIC_PATH } from './schema.js';

/** A cloud sink is configured: then FILE_SINK=auto leaves the file sink off. */
export function hasCloudSink(config: Pick<Config, 'PUBSUB_TOPIC' | 'BIGQUERY_DATASET' | 'BIGQUERY_TABLE'>): boolean {
  return config.PUBSUB_TOPIC !== undefined || bigquerySinkEnabled(config);
}

/** The BigQuery sink is on when its dataset and table are both set (a rule in rules.ts refuses one without the other). */
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
