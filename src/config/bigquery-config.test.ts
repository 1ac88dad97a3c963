import { describe, expect, it } from 'vitest';
import { ConfigError } from '../core/errors.js';
import { bigquerySinkEnabled, fileSinkEnabled, hasCloudSink } from '../sinks/registry.js';
import { loadConfig } from './load.js';

const load = (env: Record<string, string>) => loadConfig({ env, hostname: 'h' });

function problemsOf(env: Record<string, string>): string[] {
  try {
    load(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

const ENABLED = { GCP_PROJECT_ID: 'p', BIGQUERY_DATASET: 'telemetry', BIGQUERY_TABLE: 'raw' };

describe('BigQuery configuration', () => {
  it('enables the sink with dataset, table and project, with the documented defaults', () => {
    const { config, warnings } = load(ENABLED);
    expect(bigquerySinkEnabled(config)).toBe(true);
    expect(hasCloudSink(config)).toBe(true);
    expect(fileSinkEnabled(config)).toBe(false); // FILE_SINK=auto: a cloud sink is configured
    expect(config).toMatchObject({
      BIGQUERY_LOCATION: 'US',
      BIGQUERY_AUTO_CREATE: true,
      BIGQUERY_BATCH_MAX_ROWS: 500,
      BIGQUERY_BATCH_MAX_BYTES: 9_000_000,
      BIGQUERY_MAX_IN_FLIGHT: 4,
    });
    expect(config.BIGQUERY_API_ENDPOINT).toBeUndefined();
    expect(warnings).toEqual([]);
    expect(bigquerySinkEnabled(load({}).config)).toBe(false);
  });

  it('reads BIGQUERY_AUTO_CREATE as a boolean', () => {
    expect(load({ ...ENABLED, BIGQUERY_AUTO_CREATE: 'OFF' }).config.BIGQUERY_AUTO_CREATE).toBe(false);
    expect(problemsOf({ ...ENABLED, BIGQUERY_AUTO_CREATE: 'maybe' })).toEqual([
      'BIGQUERY_AUTO_CREATE: must be a boolean (true/false, on/off, 1/0, yes/no, any case), got "maybe"',
    ]);
  });

  it('needs the dataset and the table together, and a project, all reported at once', () => {
    expect(problemsOf({ BIGQUERY_DATASET: 'telemetry' })).toEqual([
      'BIGQUERY_TABLE: is unset but BIGQUERY_DATASET is set; the BigQuery sink needs both (or neither)',
      'GCP_PROJECT_ID: is unset but the BigQuery sink (BIGQUERY_DATASET, BIGQUERY_TABLE) needs the project of its dataset',
    ]);
    expect(problemsOf({ GCP_PROJECT_ID: 'p', BIGQUERY_TABLE: 'raw' })).toEqual([
      'BIGQUERY_DATASET: is unset but BIGQUERY_TABLE is set; the BigQuery sink needs both (or neither)',
    ]);
  });

  it('checks names, endpoints and limits', () => {
    expect(
      problemsOf({
        ...ENABLED,
        BIGQUERY_DATASET: 'my-dataset',
        BIGQUERY_API_ENDPOINT: '127.0.0.1:9050',
        BIGQUERY_BATCH_MAX_ROWS: '60000',
        BIGQUERY_BATCH_MAX_BYTES: '20MB',
      }),
    ).toEqual([
      'BIGQUERY_DATASET: must be a BigQuery dataset id: letters, digits and underscores, at most 1024, got "my-dataset"',
      'BIGQUERY_API_ENDPOINT: must be an "http://" or "https://" URL without a path (e.g. "http://127.0.0.1:9050"), got "127.0.0.1:9050"',
      'BIGQUERY_BATCH_MAX_ROWS: must be a whole number from 1 to 50000, got "60000"',
      expect.stringMatching(/^BIGQUERY_BATCH_MAX_BYTES: must be a byte size from 1 KiB to 10000000 bytes .*got "20MB"$/),
    ]);
    expect(load({ ...ENABLED, BIGQUERY_TABLE: 'raw readings-2026' }).config.BIGQUERY_TABLE).toBe('raw readings-2026');
  });

  it('takes one endpoint setting at most, and warns about an emulator host without /bigquery/v2', () => {
    expect(problemsOf({ ...ENABLED, BIGQUERY_API_ENDPOINT: 'http://127.0.0.1:9050', BIGQUERY_EMULATOR_HOST: 'http://127.0.0.1:9050/bigquery/v2' })).toEqual([
      expect.stringMatching(/^BIGQUERY_EMULATOR_HOST: is set together with BIGQUERY_API_ENDPOINT; set only one/),
    ]);
    expect(load({ ...ENABLED, BIGQUERY_EMULATOR_HOST: 'http://127.0.0.1:9050/bigquery/v2' }).warnings).toEqual([]);
    expect(load({ ...ENABLED, BIGQUERY_EMULATOR_HOST: 'http://127.0.0.1:9050' }).warnings).toEqual([
      expect.stringMatching(/^BIGQUERY_EMULATOR_HOST: "http:\/\/127.0.0.1:9050" does not end in \/bigquery\/v2/),
    ]);
  });
});
