/**
 * Text helpers the sinks share for operator-facing details (status pages and log lines).
 */

/**
 * google-auth-library's words when Application Default Credentials are missing or refused: the call never
 * happens, so there is no gRPC code or API status to go by, only text (and sometimes an HTTP status from the
 * token endpoint).
 */
export const CREDENTIAL_TEXT = /could not load the default credentials|invalid_grant|unauthorized_client|could not refresh access token/i;

/** Longest error description kept for a status page or a log line. */
export const MAX_ERROR_TEXT = 500;

/** `text` cut to at most `max` characters, the last one an ellipsis when cut. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * A one-line description of an error, short enough for a status page and a log line. `describe` says what a
 * sink's client library puts in its errors (a gRPC code and details, an HTTP status and reason); anything
 * thrown that is not an Error is shown as a string.
 */
export function errorText(err: unknown, describe: (err: Error) => string): string {
  return truncate(err instanceof Error ? describe(err) : String(err), MAX_ERROR_TEXT);
}
