import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.js';
import { runnerOptions } from '../dispatch/config.js';
import { httpOptions } from '../http/config.js';
import { fileSinkOptions } from '../sinks/file/config.js';
import { pubsubSinkOptions } from '../sinks/pubsub/config.js';
import { bigquerySinkOptions } from '../sinks/bigquery/config.js';
import { buildSinks, enabledSinks } from '../sinks/registry.js';
import { spoolOptions } from '../spool/config.js';
import { loadConfig } from './load.js';

// From the environment's strings to the options each component is built with, through the real loader.

const load = (env: Record<string, string>) => loadConfig({ env, hostname: 'h' }).config;
const logger = createLogger('silent');
const CLOUD = { GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'events', BIGQUERY_DATASET: 'telemetry', BIGQUERY_TABLE: 'raw' };

describe('the sinks a configuration builds', () => {
  it('is the file sink alone by default, under DATA_DIR/out', () => {
    const c = load({ DATA_DIR: '/srv/ingest' });
    expect(enabledSinks(c)).toEqual(['file']);
    expect(buildSinks(c, '/srv/ingest', logger).map((s) => s.name)).toEqual(['file']);
    expect(fileSinkOptions(c, '/srv/ingest')).toEqual({ dir: path.join('/srv/ingest', 'out'), rotateBytes: 64 * 1024 ** 2 });
    expect(fileSinkOptions(load({ FILE_SINK_DIR: 'ndjson' }), '/srv/ingest')?.dir).toBe(path.resolve('ndjson'));
  });

  it('is Pub/Sub, BigQuery, then the file sink, each with its own settings', () => {
    const c = load({
      ...CLOUD,
      FILE_SINK: 'on',
      PUBSUB_BATCH_MAX_MESSAGES: '200',
      PUBSUB_EMULATOR_HOST: 'http://127.0.0.1:8085',
      BIGQUERY_BATCH_MAX_ROWS: '100',
      BIGQUERY_MAX_IN_FLIGHT: '2',
    });
    expect(enabledSinks(c)).toEqual(['pubsub', 'bigquery', 'file']);
    const sinks = buildSinks(c, '/data', logger);
    expect(sinks.map((s) => [s.name, s.maxBatchMessages, s.maxInFlight])).toEqual([
      ['pubsub', 200, 4],
      ['bigquery', 100, 2],
      ['file', expect.any(Number), expect.any(Number)],
    ]);
    expect(pubsubSinkOptions(c)).toEqual({
      projectId: 'p',
      topic: 'projects/p/topics/events',
      emulatorHost: '127.0.0.1:8085',
      maxBatchMessages: 200,
      maxBatchBytes: 9_000_000,
      maxInFlight: 4,
      orderingKey: 'none',
    });
    expect(bigquerySinkOptions(c)).toMatchObject({ projectId: 'p', dataset: 'telemetry', table: 'raw', location: 'US', autoCreate: true, maxRequestBytes: 9_000_000 });
  });

  it('leaves the file sink off with a cloud sink unless FILE_SINK=on, and publishes one at a time with ordering keys', () => {
    const c = load({ GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'projects/other/topics/events', PUBSUB_ORDERING_KEY: 'mqtt_topic' });
    expect(enabledSinks(c)).toEqual(['pubsub']);
    const [pubsub] = buildSinks(c, '/data', logger);
    expect(pubsub).toMatchObject({ name: 'pubsub', maxInFlight: 1, topicName: 'projects/other/topics/events' });
    expect(fileSinkOptions(c, '/data')).toBeUndefined();
    expect(bigquerySinkOptions(c)).toBeUndefined();
    expect(buildSinks(load({ FILE_SINK: 'off' }), '/data', logger)).toEqual([]);
  });
});

describe('the other components', () => {
  it('get the spool, retry and HTTP settings as given', () => {
    const c = load({
      SPOOL_MAX_BYTES: '2GiB',
      SPOOL_MIN_FREE_BYTES: '512MiB',
      SPOOL_SYNC: 'normal',
      SPOOL_ACCEPT_LOSS: 'yes',
      RETRY_INITIAL_DELAY_MS: '250',
      RETRY_MAX_DELAY_MS: '5000',
      PORT: '0',
      HTTP_HOST: '127.0.0.1',
    });
    expect(spoolOptions(c)).toEqual({ maxBytes: 2 * 1024 ** 3, minFreeDiskBytes: 512 * 1024 ** 2, sync: 'normal', acceptLoss: true });
    expect(runnerOptions(c)).toEqual({ retryBaseMs: 250, retryCapMs: 5000 });
    expect(httpOptions(c)).toEqual({ host: '127.0.0.1', port: 0 });
  });
});
