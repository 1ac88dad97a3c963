/** The file sink's configuration: whether it is on, where it writes, when it starts a new file. */
import path from 'node:path';
import { z } from 'zod';
import { BOOLEAN_HINT, byteSize, KiB, readBoolean, text, type Field } from '../../core/settings/fields.js';
import { directoryProblem } from '../../core/settings/directory.js';
import { key } from '../../core/settings/key.js';
import type { DataDirConfig, EnvironmentConfig } from '../../core/settings/node.js';
import type { Section, Values } from '../../core/settings/section.js';
import { quote } from '../../core/settings/text.js';
import { bigquerySinkEnabled, type BigQueryConfig } from '../bigquery/config.js';
import type { PubsubConfig } from '../pubsub/config.js';
import type { FileSinkOptions } from './file-sink.js';

const fileSinkSwitch = (() => {
  const schema = z.preprocess(
    (raw) => (typeof raw === 'string' && raw.trim().toLowerCase() === 'auto' ? 'auto' : readBoolean(raw)),
    z.union([z.literal('auto'), z.boolean()]),
  );
  return { schema, accepts: '`auto` or a boolean', hint: BOOLEAN_HINT, envType: 'boolean' } satisfies Field<typeof schema>;
})();

const fileSinkKeys = {
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
};

/** The file sink's values. FILE_SINK_DIR is always set: unset, it is derived from DATA_DIR. */
export type FileSinkConfig = Omit<Values<typeof fileSinkKeys>, 'FILE_SINK_DIR'> & { FILE_SINK_DIR: string };

/** The keys that turn the cloud sinks on, which FILE_SINK=auto looks at. */
export type CloudSinkSwitches = Pick<PubsubConfig, 'PUBSUB_TOPIC'> & Pick<BigQueryConfig, 'BIGQUERY_DATASET' | 'BIGQUERY_TABLE'>;

/** A cloud sink is configured: then FILE_SINK=auto leaves the file sink off. */
export function hasCloudSink(config: CloudSinkSwitches): boolean {
  return config.PUBSUB_TOPIC !== undefined || bigquerySinkEnabled(config);
}

export function fileSinkEnabled(config: Pick<FileSinkConfig, 'FILE_SINK'> & CloudSinkSwitches): boolean {
  return config.FILE_SINK === 'auto' ? !hasCloudSink(config) : config.FILE_SINK;
}

/** The sink's options (all but its logger), or undefined when the sink is off. `dataDir` is DATA_DIR resolved. */
export function fileSinkOptions(c: FileSinkConfig & CloudSinkSwitches, dataDir: string): Omit<FileSinkOptions, 'logger'> | undefined {
  if (!fileSinkEnabled(c)) return undefined;
  return {
    dir: c.FILE_SINK_DIR ? path.resolve(c.FILE_SINK_DIR) : path.join(dataDir, 'out'),
    rotateBytes: c.FILE_SINK_ROTATE_BYTES,
  };
}

export const fileSinkSection = {
  keys: fileSinkKeys,
  derived: [
    {
      keys: ['FILE_SINK_DIR'],
      from: ['DATA_DIR'],
      fill(v) {
        if (v.FILE_SINK_DIR === undefined && v.DATA_DIR !== undefined) v.FILE_SINK_DIR = path.join(v.DATA_DIR, 'out');
      },
    },
  ],
  rules(c, valid, problems, warnings) {
    const switchesValid = valid('FILE_SINK', 'PUBSUB_TOPIC', 'BIGQUERY_DATASET', 'BIGQUERY_TABLE');
    // Like DATA_DIR: a folder the sink cannot write is found here rather than when the node starts.
    const fileSinkOn = switchesValid && c.FILE_SINK !== undefined && fileSinkEnabled(c as FileSinkConfig & CloudSinkSwitches);
    if (fileSinkOn && valid('FILE_SINK_DIR', 'DATA_DIR') && c.FILE_SINK_DIR !== undefined && c.FILE_SINK_DIR !== path.join(c.DATA_DIR ?? '', 'out')) {
      const why = directoryProblem(c.FILE_SINK_DIR);
      if (why) problems.push(`FILE_SINK_DIR: ${quote(c.FILE_SINK_DIR)} ${why}; the file sink writes its NDJSON files there`);
    }
    if (switchesValid && valid('APP_ENV') && c.APP_ENV !== 'dev' && !hasCloudSink(c) && c.FILE_SINK !== false) {
      warnings.push(
        `PUBSUB_TOPIC: no cloud sink is configured in ${c.APP_ENV} (PUBSUB_TOPIC and BIGQUERY_DATASET/BIGQUERY_TABLE are unset), so ` +
          'messages go only to NDJSON files under FILE_SINK_DIR, on a disk that App Engine discards when the instance is ' +
          'restarted or replaced; set PUBSUB_TOPIC and/or BIGQUERY_DATASET and BIGQUERY_TABLE',
      );
    }
    if (switchesValid && c.FILE_SINK === false && !hasCloudSink(c)) {
      warnings.push(
        'FILE_SINK: is off and no cloud sink is configured (PUBSUB_TOPIC and BIGQUERY_DATASET/BIGQUERY_TABLE are unset): the node will only spool and count messages',
      );
    }
  },
} satisfies Section<FileSinkConfig & CloudSinkSwitches & DataDirConfig & EnvironmentConfig>;
