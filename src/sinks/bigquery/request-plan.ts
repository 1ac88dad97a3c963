/**
 * Sizing insertAll requests. BigQuery refuses a request body over 10,485,760 bytes as a whole ("Request
 * payload size exceeds the limit: 10485760 bytes", reason badRequest; https://cloud.google.com/bigquery/quotas#streaming_inserts),
 * so each row is measured as it will be sent and a batch is cut into requests that stay under the
 * configured BIGQUERY_BATCH_MAX_BYTES. A row too large for any request is rejected before it is sent.
 */
import type { RawRow } from './schema.js';
import type { BigQueryRow } from '../sink.js';

/** BigQuery's limit on one insertAll request body (its own error message names this number). */
export const MAX_REQUEST_BYTES = 10_485_760;

/** `{"rows":[` … `]}` plus room for the options the client adds. */
const ENVELOPE_BYTES = 64;

/** The cells of one row: a raw row (schema.ts), or a route's typed row (RouteTargets.bigquery). */
export type RowJson = RawRow | BigQueryRow;

/** One row as the client sends it with `raw: true`, and its size in the request body. */
export interface EncodedRow {
  raw: { insertId: string; json: RowJson };
  /** `raw` as JSON text: what the request body is made of (written once, also to measure it). */
  text: string;
  /** Bytes this row adds to a request: its JSON, a separating comma, and the envelope for a lone row. */
  bytes: number;
}

export function encodeRows(rows: readonly RowJson[], insertIds: readonly string[]): EncodedRow[] {
  return rows.map((json, i) => {
    const raw = { insertId: insertIds[i]!, json };
    const text = JSON.stringify(raw);
    return { raw, text, bytes: Buffer.byteLength(text) + 1 + ENVELOPE_BYTES };
  });
}

/**
 * Groups row indexes into requests, in order, each with at most `maxRows` rows and (unless a single row is
 * larger on its own) at most `maxBytes` bytes.
 */
export function planRequests(indexes: number[], rows: readonly EncodedRow[], maxRows: number, maxBytes: number): number[][] {
  const requests: number[][] = [];
  let current: number[] = [];
  let bytes = ENVELOPE_BYTES;
  for (const i of indexes) {
    const size = rows[i]!.bytes - ENVELOPE_BYTES;
    if (current.length > 0 && (current.length >= maxRows || bytes + size > maxBytes)) {
      requests.push(current);
      current = [];
      bytes = ENVELOPE_BYTES;
    }
    current.push(i);
    bytes += size;
  }
  if (current.length > 0) requests.push(current);
  return requests;
}

/** The insertAll request body of these rows, from their JSON text (the `rows` list alone, as the client sends it). */
export function requestBody(rows: readonly EncodedRow[]): string {
  return `{"rows":[${rows.map((r) => r.text).join(',')}]}`;
}
