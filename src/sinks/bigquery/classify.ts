/**
 * What a BigQuery failure means for the rows and for the operator (docs/bigquery.md, "Error classification").
 *
 * BigQuery reports errors as `{ error: { code, message, errors: [{ reason, message, domain }] } }`; the
 * client turns that into an ApiError with `code` (the HTTP status) and `errors`. The *reason* decides, not
 * the status: throttling (`rateLimitExceeded`, `quotaExceeded`) arrives as HTTP 403, the same status as a
 * missing permission (`accessDenied`). https://cloud.google.com/bigquery/docs/error-messages
 *
 * - `failing`: a condition a person must fix (permission, missing table). Rows stay retryable; the sink's
 *   status says what to do.
 * - `degraded`: transient (outage, throttling, timeouts); retried with the dispatcher's backoff.
 * - `invalid`: BigQuery refused the request's content as a whole (too large, malformed). A request of one
 *   row is then rejected; a larger one is split to find the row.
 *
 * Reasons are metric labels, so they come from the fixed vocabulary below, never from error text.
 */
import { IngestError } from '../../core/errors.js';
import { delivered, rejected, retryable, type DeliveryOutcome } from '../../core/outcome.js';
import { SOCKET_ERROR_CODES } from '../../core/network-errors.js';
import { CREDENTIAL_TEXT, MISSING_CREDENTIALS_FIX, MISSING_CREDENTIALS_TEXT, errorText as describeError, truncate } from '../shared/error-text.js';

export type FailingReason = 'access_denied' | 'not_found' | 'schema_mismatch';
export type DegradedReason = 'unavailable' | 'backend_error' | 'rate_limited' | 'quota_exceeded' | 'timeout' | 'unreadable_response' | 'error';
export type InvalidReason = 'invalid' | 'too_large';

export type RequestErrorClass =
  /** `credentials`: the node's credentials could not be loaded or were refused (not a missing IAM role). */
  | { kind: 'failing'; reason: FailingReason; detail: string; credentials?: true }
  | { kind: 'degraded'; reason: DegradedReason; detail: string }
  | { kind: 'invalid'; reason: InvalidReason; detail: string };

/** Our own time limit on one request: node-fetch 3 under the client ignores the client's `timeout` option. */
export class RequestTimeoutError extends IngestError {
  constructor(what: string, ms: number) {
    super('REQUEST_TIMEOUT', `${what} got no answer within ${ms} ms`, { context: { what, ms } });
  }
}

/** Row-level reasons that say nothing against the row itself: send it again. */
const RETRYABLE_ROW_REASONS = new Set(['stopped', 'backendError', 'internalError', 'timeout', 'rateLimitExceeded', 'quotaExceeded', 'tableUnavailable']);

interface ApiErrorLike {
  code?: unknown;
  errors?: { reason?: string; message?: string }[];
  message?: string;
  type?: string;
}

/** Classifies an error thrown by a BigQuery REST call (other than a PartialFailureError). `table` names it for details. */
export function classifyRequestError(err: unknown, table: string): RequestErrorClass {
  const e = (err ?? {}) as ApiErrorLike;
  const text = errorText(err);
  if (err instanceof RequestTimeoutError) return { kind: 'degraded', reason: 'timeout', detail: text };
  const reason = Array.isArray(e.errors) ? e.errors.find((x) => x?.reason)?.reason : undefined;
  const status = typeof e.code === 'number' ? e.code : undefined;

  switch (reason) {
    case 'rateLimitExceeded':
      return { kind: 'degraded', reason: 'rate_limited', detail: text };
    case 'quotaExceeded':
      return { kind: 'degraded', reason: 'quota_exceeded', detail: text };
    case 'backendError':
    case 'internalError':
    case 'tableUnavailable':
      return { kind: 'degraded', reason: 'backend_error', detail: text };
    case 'accessDenied':
      return { kind: 'failing', reason: 'access_denied', detail: accessDetail(table, text) };
    case 'notFound':
      return { kind: 'failing', reason: 'not_found', detail: `${text}: create the table (mqtt-ingest provision, or BIGQUERY_AUTO_CREATE=on) or correct GCP_PROJECT_ID / BIGQUERY_DATASET / BIGQUERY_TABLE` };
  }
  // The token endpoint's refusal (invalid_grant for a revoked refresh token or a deleted key) comes from
  // google-auth-library with the token endpoint's HTTP status, 400: judged by status it would read as BigQuery
  // refusing the rows, and dead-letter every one of them.
  if (CREDENTIAL_TEXT.test(text)) return { kind: 'failing', reason: 'access_denied', detail: accessDetail(table, text), credentials: true };
  if (status !== undefined) {
    // 401: BigQuery did not take the credentials (an expired or revoked token), unlike a 403's missing role.
    if (status === 401) return { kind: 'failing', reason: 'access_denied', detail: accessDetail(table, text), credentials: true };
    if (status === 403) return { kind: 'failing', reason: 'access_denied', detail: accessDetail(table, text) };
    if (status === 404) return { kind: 'failing', reason: 'not_found', detail: `${text} (${table})` };
    if (status === 408) return { kind: 'degraded', reason: 'timeout', detail: text };
    if (status === 429) return { kind: 'degraded', reason: 'rate_limited', detail: text };
    if (status >= 500) return { kind: 'degraded', reason: 'backend_error', detail: text };
    // "Request payload size exceeds the limit" is a 400 with reason badRequest; far larger ones are a bare 413.
    if (status === 413 || /payload size exceeds|request too large/i.test(text)) return { kind: 'invalid', reason: 'too_large', detail: text };
    if (status === 400) return { kind: 'invalid', reason: 'invalid', detail: text };
    return { kind: 'degraded', reason: 'error', detail: text };
  }
  if (typeof e.code === 'string' && SOCKET_ERROR_CODES.has(e.code)) return { kind: 'degraded', reason: 'unavailable', detail: text };
  if (e.type === 'request-timeout' || e.type === 'body-timeout') return { kind: 'degraded', reason: 'timeout', detail: text };
  return { kind: 'degraded', reason: 'error', detail: text };
}

function accessDetail(table: string, text: string): string {
  if (MISSING_CREDENTIALS_TEXT.test(text)) {
    return `the node has no Google credentials to write to ${table} with: ${MISSING_CREDENTIALS_FIX} (${text})`;
  }
  return (
    `the node's credentials may not write to ${table}: grant roles/bigquery.dataEditor on the dataset to the ` +
    `service account the node runs as, or fix its credentials (${text})`
  );
}

/** One entry of an insertAll response's `insertErrors`. */
export interface InsertError {
  index: number;
  errors?: { reason?: string; message?: string; location?: string }[];
}

/**
 * The `insertErrors` of an insertAll response for a request of `count` rows, or undefined when they cannot be
 * read: not a list, an empty list (BigQuery reported a failure and named no row), or an entry without a row
 * index inside the request or with `errors` that is not a list. Unreadable means unknown, never delivered.
 */
export function readInsertErrors(value: unknown, count: number): InsertError[] | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const readable = value.every((entry: unknown) => {
    const e = entry as Partial<InsertError> | null;
    return (
      typeof e === 'object' && e !== null &&
      Number.isInteger(e.index) && e.index! >= 0 && e.index! < count &&
      (e.errors === undefined || Array.isArray(e.errors))
    );
  });
  return readable ? (value as InsertError[]) : undefined;
}

/**
 * The outcome of each row of an insertAll request from its `insertErrors` (a 200 with insertErrors is not
 * success). A row not listed was inserted. A row listed only with retryable reasons (`stopped`: valid but
 * not inserted because a neighbour was invalid) is retryable; any other reason rejects it, with BigQuery's words.
 */
export function rowOutcomes(count: number, insertErrors: readonly InsertError[]): DeliveryOutcome[] {
  const outcomes: DeliveryOutcome[] = new Array(count).fill(delivered);
  for (const entry of insertErrors) {
    if (!Number.isInteger(entry.index) || entry.index < 0 || entry.index >= count) continue;
    const errors = entry.errors ?? [];
    const fatal = errors.find((x) => !RETRYABLE_ROW_REASONS.has(x.reason ?? ''));
    if (fatal) {
      // `invalid` is the reason BigQuery gives for rows it refuses; anything else unexpected keeps a stable label.
      outcomes[entry.index] = rejected(fatal.reason === 'invalid' ? 'invalid' : 'rejected', rowDetail(errors));
    } else {
      const first = errors[0]?.reason ?? 'stopped';
      outcomes[entry.index] = retryable(first === 'stopped' ? 'stopped' : 'backend_error', rowDetail(errors));
    }
  }
  return outcomes;
}

/** BigQuery's words for one row: `location: message (reason)` for each error, `stopped` ones left out when others exist. */
function rowDetail(errors: readonly { reason?: string; message?: string; location?: string }[]): string {
  const meaningful = errors.filter((x) => x.reason !== 'stopped');
  const shown = (meaningful.length ? meaningful : errors).map((x) => {
    const where = x.location ? `${x.location}: ` : '';
    return `${where}${x.message || x.reason || 'error'}${x.reason ? ` (${x.reason})` : ''}`;
  });
  return truncate(shown.join('; ') || 'refused without a reason', 1000);
}

/** A one-line description of an error, short enough for a status page and a log line. */
export function errorText(err: unknown): string {
  return describeError(err, (error) => {
    const e = error as ApiErrorLike;
    const first = Array.isArray(e.errors) ? e.errors[0] : undefined;
    const reason = first?.reason ? ` (${first.reason})` : '';
    const status = typeof e.code === 'number' ? `HTTP ${e.code}: ` : typeof e.code === 'string' ? `${e.code}: ` : '';
    return `${status}${error.message || first?.message || error.name}${reason}`;
  });
}
