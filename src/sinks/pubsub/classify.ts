/**
 * What a failed Pub/Sub publish means for the message and for the operator.
 *
 * - `failing`: a condition a person must fix (missing topic, permission, credentials, a malformed topic or
 *   project name). The messages stay retryable (the spool keeps them until it is fixed) and the sink's
 *   status says what to do.
 * - `degraded`: a transient condition (outage, throttling, timeouts); retry with the dispatcher's backoff.
 * - `invalid`: the server refused the request's content (INVALID_ARGUMENT). When that request held a single
 *   message, the message can never be delivered as it is and is rejected.
 *
 * Reasons are metric labels, so they come from the fixed vocabulary below, never from error text.
 */
import { SOCKET_ERROR_CODES } from '../../core/network-errors.js';
import { CREDENTIAL_TEXT, MISSING_CREDENTIALS_FIX, MISSING_CREDENTIALS_TEXT, errorText as describeError } from '../shared/error-text.js';

/** gRPC status codes (grpc/doc/statuscodes.md), listed here rather than imported from the transitive google-gax. */
export const GrpcStatus = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type FailingReason = 'topic_not_found' | 'permission_denied' | 'invalid_topic' | 'failed_precondition';
export type DegradedReason =
  | 'unavailable'
  | 'deadline_exceeded'
  | 'resource_exhausted'
  | 'internal'
  | 'aborted'
  | 'cancelled'
  | 'unknown'
  | 'error';

export type PublishErrorClass =
  /** `credentials`: the node's credentials could not be loaded or were refused (not a missing IAM role). */
  | { kind: 'failing'; reason: FailingReason; detail: string; credentials?: true }
  | { kind: 'degraded'; reason: DegradedReason; detail: string }
  | { kind: 'invalid'; reason: 'invalid_argument'; detail: string };

const DEGRADED_BY_CODE: Record<number, DegradedReason> = {
  [GrpcStatus.CANCELLED]: 'cancelled',
  [GrpcStatus.UNKNOWN]: 'unknown',
  [GrpcStatus.DEADLINE_EXCEEDED]: 'deadline_exceeded',
  [GrpcStatus.RESOURCE_EXHAUSTED]: 'resource_exhausted',
  [GrpcStatus.ABORTED]: 'aborted',
  [GrpcStatus.INTERNAL]: 'internal',
  [GrpcStatus.UNAVAILABLE]: 'unavailable',
};

/**
 * INVALID_ARGUMENT about the request's resource name rather than a message: e.g. the emulator's
 * "Invalid [topics] name: (name=projects/p/topics/t1)" for a project or topic id that breaks the naming
 * rules (Pub/Sub itself says "Invalid resource name given"). Rejecting the messages for it would dead-letter
 * every message; it is a configuration to fix. Kept narrow so that a per-message refusal (such as schema
 * validation, whose text may name projects/.../schemas/...) is still a rejection.
 */
const RESOURCE_NAME_TEXT = /\[topics\] name|resource name|topic name/i;

/**
 * Classifies one publish error. `topic` is the full name of the topic the request went to, used in
 * operator-facing details; `setting` is where that topic is configured (a route's topic is set in ROUTES_FILE).
 */
export function classifyPublishError(err: unknown, topic: string, setting = 'PUBSUB_TOPIC / GCP_PROJECT_ID'): PublishErrorClass {
  const text = errorText(err);
  const code = underlyingCode(err, text);

  if (typeof code === 'number') {
    switch (code) {
      case GrpcStatus.NOT_FOUND:
        return { kind: 'failing', reason: 'topic_not_found', detail: topicNotFoundDetail(topic, text, setting) };
      case GrpcStatus.PERMISSION_DENIED:
        return { kind: 'failing', reason: 'permission_denied', detail: permissionDetail(topic, text) };
      case GrpcStatus.UNAUTHENTICATED:
        return { kind: 'failing', reason: 'permission_denied', detail: permissionDetail(topic, text), credentials: true };
      case GrpcStatus.FAILED_PRECONDITION:
        // e.g. the topic's Cloud KMS key is disabled, or a schema setting refuses every message.
        return {
          kind: 'failing',
          reason: 'failed_precondition',
          detail: `Pub/Sub refuses to publish to ${topic} until its configuration is fixed (${text})`,
        };
      case GrpcStatus.INVALID_ARGUMENT:
        if (RESOURCE_NAME_TEXT.test(text)) {
          return {
            kind: 'failing',
            reason: 'invalid_topic',
            detail: `Pub/Sub rejects the topic name ${topic}: correct ${setting} (${text})`,
          };
        }
        return { kind: 'invalid', reason: 'invalid_argument', detail: text };
      default: {
        // The credentials failed while a call was being made (a refresh token revoked, a deleted key): grpc-js
        // reports "Getting metadata from plugin failed with error: …" with the auth library's error code when it
        // is a number (the token endpoint's HTTP status, 400 for invalid_grant), else UNKNOWN
        // (load-balancing-call.js).
        if (CREDENTIAL_TEXT.test(text)) {
          return { kind: 'failing', reason: 'permission_denied', detail: permissionDetail(topic, text), credentials: true };
        }
        const reason = DEGRADED_BY_CODE[code];
        if (reason) return { kind: 'degraded', reason, detail: text };
        // OUT_OF_RANGE, DATA_LOSS, UNIMPLEMENTED...: unexpected on Publish; retry and show it.
        return { kind: 'degraded', reason: 'error', detail: text };
      }
    }
  }

  if (typeof code === 'string' && SOCKET_ERROR_CODES.has(code)) {
    return { kind: 'degraded', reason: 'unavailable', detail: text };
  }
  const httpStatus = (err as { response?: { status?: unknown } } | null | undefined)?.response?.status;
  if (httpStatus === 401 || httpStatus === 403 || CREDENTIAL_TEXT.test(text)) {
    return { kind: 'failing', reason: 'permission_denied', detail: permissionDetail(topic, text), credentials: true };
  }
  return { kind: 'degraded', reason: 'error', detail: text };
}

/**
 * google-gax surprise: when its own retries run out of time it reports DEADLINE_EXCEEDED ("Total timeout of
 * API ... exceeded N milliseconds retrying error Error: 14 UNAVAILABLE: ...") whatever the attempts failed
 * with. The last attempt's code is the better reason: an unreachable endpoint reads `unavailable`, not a slow one.
 */
function underlyingCode(err: unknown, text: string): unknown {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  if (code !== GrpcStatus.DEADLINE_EXCEEDED) return code;
  const inner = /retrying error Error: (\d+) [A-Z_]+/.exec(text);
  return inner ? Number(inner[1]) : code;
}

function permissionDetail(topic: string, text: string): string {
  if (MISSING_CREDENTIALS_TEXT.test(text)) {
    return `the node has no Google credentials to publish to ${topic} with: ${MISSING_CREDENTIALS_FIX} (${text})`;
  }
  return (
    `the node's Application Default Credentials may not publish to ${topic}: grant roles/pubsub.publisher ` +
    `on the topic to the service account the node runs as, or fix its credentials (${text})`
  );
}

/**
 * `mqtt-ingest provision` first: it creates the topic from the node's own configuration (the emulator's too,
 * which forgets its topics when it restarts), so nothing has to be typed twice; gcloud is the alternative.
 */
function topicNotFoundDetail(topic: string, text: string, setting: string): string {
  const [, project, id] = /^projects\/([^/]+)\/topics\/(.+)$/.exec(topic) ?? [];
  const gcloud = project && id ? `gcloud pubsub topics create ${id} --project=${project}` : 'gcloud pubsub topics create';
  return (
    `Pub/Sub topic ${topic} does not exist: create it with \`mqtt-ingest provision\` (same configuration as the node), ` +
    `or with \`${gcloud}\`; or correct ${setting} (${text})`
  );
}

/** A one-line description of an error, short enough for a status page and a log line. */
export function errorText(err: unknown): string {
  return describeError(err, (e) => {
    const details = (e as { details?: unknown }).details;
    const code = (e as { code?: unknown }).code;
    // gRPC errors carry the server's words in `details`; `message` repeats them after "<code> <NAME>: ".
    const base = typeof details === 'string' && details ? `${codeName(code)}: ${details}` : e.message;
    // gax appends every attempt's error after " : Previous errors : [...]"; the first part says enough.
    return base.split(' : Previous errors')[0]!;
  });
}

function codeName(code: unknown): string {
  if (typeof code !== 'number') return String(code ?? 'error');
  const entry = Object.entries(GrpcStatus).find(([, value]) => value === code);
  return entry ? entry[0] : `code ${code}`;
}
