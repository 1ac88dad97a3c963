import { ERRORS, isErrorCode } from '../core/error-catalogue.js';

/** A heading of docs/runbook.md and its link (GitHub's anchor of the heading, as the alerts' `runbook_url` has it). */
export interface RunbookSection {
  heading: string;
  url: string;
}

/** What the status page says an operator does about a sink's problem, and where the runbook says more. */
export interface SinkAction {
  action: string;
  runbook: RunbookSection;
}

/** The runbook sections the sinks' actions name (test/status-api.test.ts checks each is a heading of docs/runbook.md). */
export const SINK_RUNBOOK_HEADINGS = ['Why a sink fails', 'Pub/Sub permission denied', 'MqttIngestDeliveryFailing', 'MqttIngestSpoolAge'] as const;
type Heading = (typeof SINK_RUNBOOK_HEADINGS)[number];

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens (`Pub/Sub permission denied` → `pubsub-permission-denied`). */
export function runbookSection(heading: string): RunbookSection {
  const anchor = heading.toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-');
  return { heading, url: `docs/runbook.md#${anchor}` };
}

const SPOOL_KEEPS = 'the spool keeps the messages and the sink sends them by itself once it works';
const OUTAGE = `nothing while it lasts minutes: ${SPOOL_KEEPS}; if it lasts, check the node's network path to`;

/**
 * What to do per sink and reason (the classifiers' fixed vocabulary: src/sinks/pubsub/classify.ts,
 * src/sinks/bigquery/classify.ts; a thrown write is `error`), in the words of docs/runbook.md "Why a sink fails".
 */
const BY_REASON: Record<string, Record<string, [string, Heading]>> = {
  pubsub: {
    topic_not_found: ['create the topic with `mqtt-ingest provision` (the same configuration as the node) or `gcloud pubsub topics create`, or correct PUBSUB_TOPIC / GCP_PROJECT_ID (a route\'s `pubsub.topic` in ROUTES_FILE)', 'Why a sink fails'],
    invalid_topic: ['correct the topic name in PUBSUB_TOPIC / GCP_PROJECT_ID, or the route\'s `pubsub.topic` in ROUTES_FILE, and restart the node', 'Why a sink fails'],
    failed_precondition: ['fix the topic\'s settings in Pub/Sub (its Cloud KMS key, its schema); the detail quotes what Pub/Sub refuses', 'Why a sink fails'],
    permission_denied: ['grant roles/pubsub.publisher on the topic to the service account the node runs as, or give the node credentials (GOOGLE_APPLICATION_CREDENTIALS, or a service account attached to where it runs); `mqtt-ingest provision --service-account …` names every missing permission', 'Pub/Sub permission denied'],
    unavailable: [`${OUTAGE} Pub/Sub (egress, Private Google Access; PUBSUB_EMULATOR_HOST with the emulator)`, 'MqttIngestDeliveryFailing'],
    deadline_exceeded: [`${OUTAGE} Pub/Sub and its latency`, 'MqttIngestDeliveryFailing'],
    internal: [`${OUTAGE} Pub/Sub; Google's status page says whether Pub/Sub has an incident`, 'MqttIngestDeliveryFailing'],
    aborted: [`${OUTAGE} Pub/Sub`, 'MqttIngestDeliveryFailing'],
    cancelled: [`${OUTAGE} Pub/Sub`, 'MqttIngestDeliveryFailing'],
    unknown: [`${OUTAGE} Pub/Sub`, 'MqttIngestDeliveryFailing'],
    resource_exhausted: [`Pub/Sub throttles the node: nothing if it passes (${SPOOL_KEEPS}); if it lasts, raise the project's Pub/Sub publish quota`, 'Why a sink fails'],
    held_back: ['messages wait behind an earlier one of their ordering key that failed: look at the last error, the reason of that one', 'Why a sink fails'],
  },
  bigquery: {
    access_denied: ['grant roles/bigquery.dataEditor on the dataset to the service account the node runs as, or give the node credentials (GOOGLE_APPLICATION_CREDENTIALS, or a service account attached to where it runs)', 'Why a sink fails'],
    not_found: ['create the table: BIGQUERY_AUTO_CREATE=on, or `mqtt-ingest provision`; or correct GCP_PROJECT_ID / BIGQUERY_DATASET / BIGQUERY_TABLE (a route\'s `bigquery.table` in ROUTES_FILE)', 'Why a sink fails'],
    schema_mismatch: ['the table no longer fits the rows: `mqtt-ingest provision --dry-run` shows each difference; change the table (or the route) to fit', 'Why a sink fails'],
    unavailable: [`${OUTAGE} BigQuery (egress, Private Google Access, BIGQUERY_API_ENDPOINT)`, 'MqttIngestDeliveryFailing'],
    backend_error: [`${OUTAGE} BigQuery; Google's status page says whether BigQuery has an incident`, 'MqttIngestDeliveryFailing'],
    timeout: [ERRORS.REQUEST_TIMEOUT.action, 'MqttIngestDeliveryFailing'],
    unreadable_response: [`${OUTAGE} BigQuery (a proxy that answers in its place)`, 'MqttIngestDeliveryFailing'],
    rate_limited: [`BigQuery throttles the node's streaming inserts: nothing if it passes (${SPOOL_KEEPS}); if it lasts, lower the rate or ask for more streaming quota`, 'Why a sink fails'],
    quota_exceeded: [`the project's BigQuery streaming quota is used up: ${SPOOL_KEEPS}; raise the quota if it lasts`, 'Why a sink fails'],
    stopped: ['rows wait behind another row of their request that BigQuery refused: look at the last error, the reason of that one', 'Why a sink fails'],
  },
  file: {
    error: ['make FILE_SINK_DIR a writable directory for the node\'s user with free space, and remove whatever stands where the last error says a file should be', 'Why a sink fails'],
  },
};

/** The runner's own reasons (src/dispatch/sink-runner.ts), the same for every sink. */
const RUNNER: Record<string, [string, Heading]> = {
  spool_ack_failed: [ERRORS.SPOOL_ACK_FAILED.action, 'Why a sink fails'],
  slow_write: ['nothing if it passes; a write that waits for minutes means the destination or the network path to it hangs: the sink retries it, and the spool keeps the messages', 'MqttIngestSpoolAge'],
};

/**
 * What to do about a sink that is not ok, from its reason; undefined while ok. A detail that starts with a code of
 * the error catalogue (`REQUEST_TIMEOUT: …`) takes that code's action; an unknown reason gets the catalogue's action
 * for SINK_FAILING or SINK_DEGRADED, the lines the node logs for it.
 */
export function sinkAction(sink: string, status: { state: string; reason?: string; detail?: string }): SinkAction | undefined {
  if (status.state === 'ok') return undefined;
  const reason = status.reason ?? '';
  const known = RUNNER[reason] ?? BY_REASON[sink]?.[reason];
  if (known) return { action: known[0], runbook: runbookSection(known[1]) };
  const code = /^([A-Z][A-Z0-9_]+):/.exec(status.detail ?? '')?.[1];
  if (code && isErrorCode(code)) return { action: ERRORS[code].action, runbook: runbookSection('Why a sink fails') };
  const generic = status.state === 'failing' ? ERRORS.SINK_FAILING.action : ERRORS.SINK_DEGRADED.action;
  return { action: generic, runbook: runbookSection(status.state === 'failing' ? 'Why a sink fails' : 'MqttIngestDeliveryFailing') };
}
