/**
 * Text helpers the sinks share for operator-facing details (status pages and log lines).
 */

/**
 * google-auth-library's words when it has no credentials to use at all: no Application Default Credentials
 * were found (GoogleAuthExceptionMessages.NO_ADC_FOUND), or the file GOOGLE_APPLICATION_CREDENTIALS names (or
 * gcloud's application_default_credentials.json) cannot be read or is not a credentials file
 * (googleauth.js _getApplicationCredentialsFromFilePath, fromJSON).
 */
export const MISSING_CREDENTIALS_TEXT =
  /could not load the default credentials|does not exist, or it is not a file|unable to read the credential file|the incoming json object|must pass in a (json object|stream) containing/i;

/**
 * google-auth-library's words when Application Default Credentials are missing or refused: the call never
 * happens, so there is no gRPC code or API status to go by, only text (and sometimes an HTTP status from the
 * token endpoint).
 */
export const CREDENTIAL_TEXT = new RegExp(
  `${MISSING_CREDENTIALS_TEXT.source}|invalid_grant|unauthorized_client|could not refresh access token`,
  'i',
);

/**
 * What to do when the node has no credentials, in words for the status page and the log line. The sinks try
 * again on their own (a new client loads the credentials anew), so nothing needs a restart once they are there.
 */
export const MISSING_CREDENTIALS_FIX =
  'on a workstation run `gcloud auth application-default login`; elsewhere set GOOGLE_APPLICATION_CREDENTIALS ' +
  'to a service account key file, or run the node as a service account (attached to its VM, App Engine ' +
  'service, Cloud Run service or GKE workload). The spool keeps the messages and the sink picks the ' +
  'credentials up by itself';

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
  return truncate(withoutEmptyNotes(err instanceof Error ? describe(err) : String(err)), MAX_ERROR_TEXT);
}

/**
 * grpc-js ends "No connection established. Last error: … ." and "No addresses resolved." with "Resolution note: "
 * and the resolver's note, which is most often empty (load-balancer-pick-first.js, load-balancer-round-robin.js):
 * the empty label is dropped, a note with words is kept.
 */
export function withoutEmptyNotes(text: string): string {
  return text.replace(/\.?\s*Resolution note:\s*(?=$|[.;,)\]])/g, '');
}
