/**
 * BigQuery sinks against the local BigQuery server, for the sink's unit tests: `server()` starts one, `sink()`
 * makes a sink on it with the test defaults; both are stopped after each test.
 */
import { afterEach } from 'vitest';
import { BigQuerySink, type BigQuerySinkOptions } from '../../src/sinks/bigquery/bigquery-sink.js';
import { createLogger } from '../../src/core/logger.js';
import { startBigQueryServer, type BigQueryServer } from './bigquery-server.js';

export function localBigQuerySinks(): {
  server(opts?: Parameters<typeof startBigQueryServer>[0]): Promise<BigQueryServer>;
  sink(s: { url: string; projectId: string }, over?: Partial<BigQuerySinkOptions>): BigQuerySink;
} {
  const servers: BigQueryServer[] = [];
  const sinks: BigQuerySink[] = [];
  afterEach(async () => {
    await Promise.all(sinks.splice(0).map((s) => s.close()));
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });
  return {
    async server(opts) {
      const s = await startBigQueryServer(opts);
      servers.push(s);
      return s;
    },
    sink(s, over = {}) {
      const made = new BigQuerySink({
        projectId: s.projectId,
        dataset: 'telemetry',
        table: 'raw',
        location: 'US',
        autoCreate: true,
        apiEndpoint: s.url,
        maxBatchRows: 500,
        maxRequestBytes: 9_000_000,
        maxInFlight: 2,
        requestTimeoutMs: 2_000,
        logger: createLogger('silent'),
        ...over,
      });
      sinks.push(made);
      return made;
    },
  };
}
