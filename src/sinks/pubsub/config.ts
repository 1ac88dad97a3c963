/**
 * The Pub/Sub sink's configuration: the topic, an emulator, batch sizes and ordering. The topic's full path is
 * built here once (`pubsubTopic`), for the sink and for the commands that provision and check it.
 */
import { z } from 'zod';
import { byteSize, oneOf, text, wholeNumber, type Field } from '../../core/settings/fields.js';
import { key } from '../../core/settings/key.js';
import type { GcpProjectConfig } from '../../core/settings/node.js';
import type { Section, Values } from '../../core/settings/section.js';
import { quote } from '../../core/settings/text.js';
import type { PubSubSinkOptions } from './pubsub-sink.js';

// Pub/Sub topic ids: 3 to 255 characters, starting with a letter, not starting with "goog".
const TOPIC_ID = '(?!goog)[A-Za-z][A-Za-z0-9\\-_.~+%]{2,254}';
const PUBSUB_TOPIC_PATH = new RegExp(`^projects/([^/\\s]+)/topics/(${TOPIC_ID})$`);
const PUBSUB_TOPIC_NAME = new RegExp(`^${TOPIC_ID}$`);

const emulatorHost = (() => {
  // Google's client strips a leading http:// or https:// from PUBSUB_EMULATOR_HOST, so that is accepted too,
  // and removed here: the sinks get plain `host:port` whichever way it was written.
  const HOST_PORT = /^(?:https?:\/\/)?((?:\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):(\d{1,5}))\/?$/;
  const schema = z
    .string()
    .refine((v) => {
      const port = Number(HOST_PORT.exec(v)?.[2]);
      return port >= 1 && port <= 65535;
    })
    .transform((v) => HOST_PORT.exec(v)![1]!);
  return { schema, accepts: '`host:port`', envType: 'host-port' } satisfies Field<typeof schema>;
})();

const pubsubKeys = {
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
    description:
      'Most messages in one batch handed to Pub/Sub, sent as one publish request (the API allows 1000). With routes ' +
      '(`ROUTES_FILE`) a batch holds up to this many per topic the routes publish to, for up to four topics, one request each.',
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
};

export type PubsubConfig = Values<typeof pubsubKeys>;

/** The topic the sink publishes to, and the project its client works in. */
export interface PubsubTopic {
  /** `projects/P/topics/T` */
  path: string;
  /** GCP_PROJECT_ID, or the topic's own project when that is unset. */
  projectId: string;
}

/**
 * The Pub/Sub topic of a configuration, or undefined when the sink is off. A bare topic id is taken in
 * GCP_PROJECT_ID (a rule below refuses one without it); a full path names its own project.
 */
export function pubsubTopic(c: Pick<PubsubConfig, 'PUBSUB_TOPIC'> & GcpProjectConfig): PubsubTopic | undefined {
  const topic = c.PUBSUB_TOPIC;
  if (topic === undefined) return undefined;
  const own = PUBSUB_TOPIC_PATH.exec(topic)?.[1];
  if (own !== undefined) return { path: topic, projectId: c.GCP_PROJECT_ID ?? own };
  return { path: `projects/${c.GCP_PROJECT_ID}/topics/${topic}`, projectId: c.GCP_PROJECT_ID! };
}

/** The sink's options (all but its logger), or undefined when the sink is off. */
export function pubsubSinkOptions(c: PubsubConfig & GcpProjectConfig): Omit<PubSubSinkOptions, 'logger'> | undefined {
  const topic = pubsubTopic(c);
  if (!topic) return undefined;
  return {
    projectId: topic.projectId,
    topic: topic.path,
    emulatorHost: c.PUBSUB_EMULATOR_HOST,
    maxBatchMessages: c.PUBSUB_BATCH_MAX_MESSAGES,
    maxBatchBytes: c.PUBSUB_BATCH_MAX_BYTES,
    maxInFlight: c.PUBSUB_MAX_IN_FLIGHT,
    orderingKey: c.PUBSUB_ORDERING_KEY,
  };
}

export const pubsubSection = {
  keys: pubsubKeys,
  rules(c, valid, problems) {
    if (valid('PUBSUB_TOPIC', 'GCP_PROJECT_ID') && c.PUBSUB_TOPIC !== undefined && c.GCP_PROJECT_ID === undefined) {
      if (!PUBSUB_TOPIC_PATH.test(c.PUBSUB_TOPIC)) {
        problems.push(
          `PUBSUB_TOPIC: ${quote(c.PUBSUB_TOPIC)} is a topic id without a project, and GCP_PROJECT_ID is unset; ` +
            `set GCP_PROJECT_ID or give the full path projects/PROJECT/topics/${c.PUBSUB_TOPIC}`,
        );
      }
    }
  },
} satisfies Section<PubsubConfig & GcpProjectConfig>;
