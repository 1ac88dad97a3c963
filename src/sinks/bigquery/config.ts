/** The BigQuery sink's configuration: the raw table, where a new dataset is made, endpoints and request sizes. */
import { boolean, byteSize, KiB, text, wholeNumber } from '../../core/settings/fields.js';
import { key } from '../../core/settings/key.js';
import type { EnvironmentConfig, GcpProjectConfig } from '../../core/settings/node.js';
import type { Section, Values } from '../../core/settings/section.js';
import { quote, show } from '../../core/settings/text.js';
import type { BigQuerySinkOptions } from './bigquery-sink.js';

// BigQuery names (cloud.google.com/bigquery/docs/datasets#dataset-naming, /tables#table_naming): a dataset id is
// letters, digits and underscores; a table id may also hold other Unicode letters, marks, digits, dashes and spaces.
const bigqueryDataset = text('a BigQuery dataset id: letters, digits and underscores, at most 1024', {
  test: (v) => /^[A-Za-z0-9_]{1,1024}$/.test(v),
});
const bigqueryTable = text('a BigQuery table id: letters, marks, digits, `_`, `-` and spaces, at most 1024 bytes', {
  test: (v) => /^[\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}]+$/u.test(v) && Buffer.byteLength(v) <= 1024,
});

const bigqueryKeys = {
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
};

export type BigQueryConfig = Values<typeof bigqueryKeys>;

/** The BigQuery sink is on when its dataset and table are both set (a rule below refuses one without the other). */
export function bigquerySinkEnabled(config: Pick<BigQueryConfig, 'BIGQUERY_DATASET' | 'BIGQUERY_TABLE'>): boolean {
  return config.BIGQUERY_DATASET !== undefined && config.BIGQUERY_TABLE !== undefined;
}

/** The sink's options (all but its logger), or undefined when the sink is off. */
export function bigquerySinkOptions(c: BigQueryConfig & GcpProjectConfig): Omit<BigQuerySinkOptions, 'logger'> | undefined {
  if (!bigquerySinkEnabled(c)) return undefined;
  return {
    projectId: c.GCP_PROJECT_ID as string,
    dataset: c.BIGQUERY_DATASET as string,
    table: c.BIGQUERY_TABLE as string,
    location: c.BIGQUERY_LOCATION,
    autoCreate: c.BIGQUERY_AUTO_CREATE,
    apiEndpoint: c.BIGQUERY_API_ENDPOINT,
    emulatorHost: c.BIGQUERY_EMULATOR_HOST,
    maxBatchRows: c.BIGQUERY_BATCH_MAX_ROWS,
    maxRequestBytes: c.BIGQUERY_BATCH_MAX_BYTES,
    maxInFlight: c.BIGQUERY_MAX_IN_FLIGHT,
  };
}

/** The BigQuery sink needs its dataset and table together, a project, and one endpoint setting at most. */
export const bigquerySection = {
  keys: bigqueryKeys,
  rules(c, valid, problems, warnings, { sources }) {
    if (valid('APP_ENV', 'BIGQUERY_DATASET', 'BIGQUERY_TABLE', 'BIGQUERY_LOCATION') && bigquerySinkEnabled(c) && sources.BIGQUERY_LOCATION === 'default') {
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
  },
} satisfies Section<BigQueryConfig & EnvironmentConfig & GcpProjectConfig>;
