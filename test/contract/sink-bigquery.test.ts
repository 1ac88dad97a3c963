import { afterAll, beforeAll, describe } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { BigQuerySink } from '../../src/sinks/bigquery/bigquery-sink.js';
import { startBigQueryServer, type BigQueryServer } from '../helpers/bigquery-server.js';
import { freePort } from '../helpers/ports.js';
import { sinkContract } from './sink-contract.js';

describe('BigQuery sink contract (the local BigQuery server)', () => {
  let server: BigQueryServer;
  const servers: BigQueryServer[] = [];
  beforeAll(async () => {
    server = await startBigQueryServer();
    servers.push(server);
  });
  afterAll(async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });

  let tables = 0;
  const sink = (url: string, table: string) =>
    new BigQuerySink({
      projectId: 'test-project',
      dataset: 'telemetry',
      table,
      location: 'US',
      autoCreate: true,
      apiEndpoint: url,
      maxBatchRows: 500,
      maxRequestBytes: 9_000_000,
      maxInFlight: 2,
      requestTimeoutMs: 2_000,
      startTimeoutMs: 2_000,
      logger: createLogger('silent'),
    });

  sinkContract({
    keepsOrder: true,
    async working() {
      tables += 1;
      const table = `contract_${tables}`;
      return { sink: sink(server.url, table), stored: async () => server.rows('telemetry', table).map((r) => String(r.json.message_id)) };
    },
    // BigQuery's own rule: JSON nested deeper than 500 levels is invalid.
    refused: (m) => ({ ...m, payload: Buffer.from('['.repeat(600) + ']'.repeat(600)) }),
    failures: [
      {
        what: 'BigQuery unreachable',
        sink: async () => sink(`http://127.0.0.1:${await freePort()}`, 'raw'),
        state: 'degraded',
        reason: /unavailable/,
      },
      {
        what: 'the permission to insert refused',
        async sink() {
          const refusing = await startBigQueryServer();
          servers.push(refusing);
          refusing.failNext(403, 10_000, { reason: 'accessDenied' });
          return sink(refusing.url, 'raw');
        },
        state: 'failing',
        reason: /access_denied/,
      },
    ],
  });
});
