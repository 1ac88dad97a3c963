import { BROKER } from './error-catalogue-broker.js';
import type { ErrorEntry } from './error-entry.js';
/**
 * The error catalogue: every code the node and its commands report, what it means and what an operator does
 * about it. docs/errors.md is rendered from this table (`mqtt-ingest docs errors`, errors-docs.ts) and a unit
 * test fails when the two differ. Operators alert on these names: a code is never renamed or reused for another
 * condition; a new condition gets a new code.
 *
 * A code names one condition. It is the `code` of the error thrown for it (IngestError and its subclasses,
 * errors.ts, which re-exports this table), the `code` field of the log line that reports it, or both. A failed start
 * logs `start failed` with `code: START_FAILED` and the error's own code in `err.code`. A command that fails
 * prints its message on stderr, as it always has; the meaning of its code here names the command.
 *
 * Not catalogued, on purpose:
 * - errors that mean a bug in the node itself, an invariant a code change broke (a sink answering fewer outcomes
 *   than messages, a configuration key without metadata, a sink used before start(), an Aedes persistence
 *   without storeRetained). They stay plain Errors; one that escapes is reported as START_FAILED,
 *   UNCAUGHT_EXCEPTION or UNHANDLED_REJECTION, with its stack.
 * - what is said to an MQTT client (CONNACK return codes, `$SYS topics are reserved`) and the words of a single
 *   connection's failure (`connection timed out after …`): they are the `reason` inside a catalogued line.
 * - the codes of other systems: SQLite's (`SQLITE_CORRUPT`), gRPC's and HTTP statuses, in `err.code` or `detail`.
 */
export type { ErrorEntry } from './error-entry.js';

const NODE = {
  NODE_STARTING: { meaning: 'the node is starting; the line gives its version, broker mode and `APP_ENV`', action: 'nothing; the first line of each start' },
  ROUTES_LOADED: { meaning: 'the node read its routes file (`ROUTES_FILE`, docs/routing.md): the line gives the file, the route names in the order they are tried, and what happens to messages no route matches', action: 'nothing; `mqtt-ingest check-config` prints the routes in full' },
  NODE_STARTED: {
    meaning: 'the node started: spool open, sinks and HTTP up, the broker taking connections; the line gives the sinks, `DATA_DIR` and the ports',
    action: 'nothing',
  },
  NODE_STOPPED: {
    meaning: 'the node stopped (SIGTERM, SIGINT, or after `NODE_FATAL`); the line gives how long the stop took',
    action: 'nothing; what was not delivered stays in the spool and is sent after the next start',
  },
  NODE_LEAVING: {
    meaning: '`mqtt-ingest leave` (POST /leave): the node stops taking messages for good (external mode: it unsubscribes, drains what the broker still sends, then ends its session; embedded: its broker closes and disconnects the publishers; mosquitto: its Mosquitto restarts with the loopback listener only, the subscriber drains what it holds for the node, then Mosquitto stops) and delivers its spool to the sinks; the line gives the deadline. `/readyz` answers 503 with `components.leave`',
    action: 'wait for `NODE_LEFT`, then scale down (docs/operations.md, "Scaling down: mqtt-ingest leave")',
  },
  NODE_LEFT: {
    meaning: 'the leave is done: the node takes nothing, the broker holds no session for it (external mode; in mosquitto mode its own Mosquitto, drained, is stopped) and the spool is empty (dead letters stay where they are); it stays up, taking nothing, until SIGTERM',
    action: 'stop the node and scale down (docs/operations.md, "Scaling down: mqtt-ingest leave")',
  },
  NODE_LEAVE_DEADLINE_PASSED: {
    meaning: 'the leave\'s deadline passed with messages still in the spool or the subscriber not yet off the broker; the line gives how many and why. The node goes on delivering, still taking nothing, and logs `NODE_LEFT` once done',
    action: 'read `detail` and `components.sinks` in `/readyz` (a sink that cannot deliver); run `mqtt-ingest leave --deadline …` again to wait longer',
  },
  LEAVE_REFUSED: {
    meaning: '`mqtt-ingest leave` refused: the node runs the mosquitto broker mode with `MQTT_SHARE_GROUP`, so other nodes subscribe to its Mosquitto; closing its public listener would cut them off and strand what it queued for their sessions',
    action: 'leave one of the nodes that subscribe to it instead, or scale it down by stopping it and keeping its volume (docs/operations.md, "Scaling down: mqtt-ingest leave")',
  },
  START_FAILED: {
    meaning: 'the node did not start (exit 1): `err.code` in the same line names why, a code of this table or SQLite\'s own (`SQLITE_CORRUPT`, `SQLITE_NOTADB`), and `err.message` says what',
    action: 'look up `err.code`; a restart does not help until its cause is fixed',
  },
  START_ABORTED: { meaning: 'a stop request (SIGTERM, SIGINT) came while the node was starting: it stops what it had started and exits 0', action: 'nothing' },
  STOP_FAILED: {
    meaning: 'a step of the stop failed (the line gives the error); the node exits 1',
    action: 'nothing acknowledged is lost (the spool is on disk); report it with the line if it repeats',
  },
  SHUTDOWN_FLUSH_TIMEOUT: {
    meaning: 'at the stop, batches in flight did not finish within `SHUTDOWN_TIMEOUT_MS`: they stay in the spool and are sent again after the restart (same `message_id`)',
    action: 'nothing is lost; raise `SHUTDOWN_TIMEOUT_MS` (and the platform\'s grace period) if it happens at every stop',
  },
  NODE_FATAL: {
    meaning: 'a component cannot recover (a broker crash loop, logged just before with its own code): liveness fails, the node stops and exits 1 so that the platform restarts it',
    action: 'read the line before it (`BROKER_CRASH_LOOP`); the restart is automatic',
  },
  UNCAUGHT_EXCEPTION: {
    meaning: 'an error escaped every handler (a bug): logged with its stack, then the node exits 70 for a restart; nothing acknowledged is lost',
    action: 'report it with the line (message and stack)',
  },
  UNHANDLED_REJECTION: {
    meaning: 'a failed promise escaped every handler (a bug): logged with its stack, then the node exits 70 for a restart; nothing acknowledged is lost',
    action: 'report it with the line (message and stack)',
  },
  NO_SINK_ENABLED: {
    meaning: 'no sink is enabled (`FILE_SINK=off` and no cloud sink): messages are spooled and counted only',
    action: 'enable a sink (`PUBSUB_TOPIC`, `BIGQUERY_DATASET` and `BIGQUERY_TABLE`, or `FILE_SINK=on`) unless counting is all this node is for',
  },
  GCE_METADATA_UNREACHABLE: {
    meaning: 'Google\'s client library could not reach a GCE metadata server, so no credentials come from an attached service account',
    action: 'outside Google Cloud set `METADATA_SERVER_DETECTION=none` and give credentials another way; on Google Cloud check the instance\'s service account',
  },
} satisfies Record<string, ErrorEntry>;

const CONFIGURATION = {
  CONFIG_INVALID: {
    meaning: 'the configuration has problems, each listed naming the variable: `run` stops before any port opens (exit 1); `check-config`, `dlq` and `provision` refuse likewise',
    action: 'fix each named variable; `mqtt-ingest check-config` checks a configuration offline',
  },
  CONFIG_WARNING: {
    meaning: 'a setting is accepted but probably not what was meant (an unknown variable, the old deployment\'s name, a weakness allowed by `MQTT_ALLOW_INSECURE`, credentials missing for now); one line each',
    action: 'correct or remove what the line names; `check-config` prints the same warnings',
  },
  SECRET_UNAVAILABLE: {
    meaning: 'an `sm://` reference could not be read at start (missing, disabled, no permission, damaged in transit); each key is listed and the node exits 1',
    action: 'create or enable the secret version, or grant the node\'s account `roles/secretmanager.secretAccessor` on it (docs/operations.md, "Secrets")',
  },
  SECRET_RESOLVED: {
    meaning: 'an `sm://` reference was read at start; the line gives the key, the reference and the version read, never the value',
    action: 'nothing; after a rotation, the version shows which one the node runs with',
  },
  SECRET_MANAGER_SLOW: {
    meaning: 'Secret Manager has not answered the start\'s `sm://` reads yet; said every 15 s while the start waits',
    action: 'check `SECRET_MANAGER_API_ENDPOINT`, the network path to Secret Manager and its status',
  },
} satisfies Record<string, ErrorEntry>;

const SPOOL = {
  SPOOL_FULL: {
    meaning: 'the spool reached `SPOOL_MAX_BYTES`, or a commit would leave less than `SPOOL_MIN_FREE_BYTES` on the disk (the line says which): acknowledgements pause (back-pressure), nothing is dropped',
    action: 'wait for the sinks to drain the backlog, or free disk space, raise `SPOOL_MAX_BYTES` or lower `SPOOL_MIN_FREE_BYTES` (docs/operations.md, "A full disk")',
  },
  SPOOL_FULL_AT_START: {
    meaning: 'the spool is already full when the node starts (the line says why): no message is acknowledged until there is room',
    action: 'as `SPOOL_FULL`',
  },
  SPOOL_ROOM_AGAIN: { meaning: 'the spool has room again after `SPOOL_FULL`: acknowledgements resumed', action: 'nothing' },
  SPOOL_CLOSED: {
    meaning: 'a write came after the spool closed (shutdown); the message stays unacknowledged at the broker',
    action: 'nothing; the publisher, or the broker for the node\'s subscriber, sends it again after the restart',
  },
  SPOOL_VERSION: {
    meaning: 'the spool file was written in another format version; the node does not start',
    action: 'start the version that wrote it to drain it, or move the file aside',
  },
  SPOOL_DAMAGED: {
    meaning: 'the spool holds less than the node committed (a deleted or truncated WAL, an emptied or older `spool.db`) or cannot be read: the node refuses to start and `dlq` refuses to open it, changing no file',
    action: 'restore the missing file if a copy exists, or start once with `SPOOL_ACCEPT_LOSS=true` (docs/operations.md, "The spool\'s files")',
  },
  SPOOL_LOSS_ACCEPTED: {
    meaning: 'the node started on a damaged spool because `SPOOL_ACCEPT_LOSS=true`; the line says what may be missing and where the damaged files were kept',
    action: 'set `SPOOL_ACCEPT_LOSS` back to `false`, or a later loss starts with only this warning; inspect or remove the `*.damaged-<time>` files',
  },
  SPOOL_RECORD_MISSING: {
    meaning: 'the spool\'s commit record was missing, so this start could not check `spool.db` for lost commits; a new record was written',
    action: 'nothing, unless the file was removed by hand; the next start checks again',
  },
  SPOOL_DISK_TOO_SMALL: {
    meaning: 'the file system of `DATA_DIR` holds no more than `SPOOL_MIN_FREE_BYTES` in all: the spool takes no message (back-pressure)',
    action: 'lower `SPOOL_MIN_FREE_BYTES` or give `DATA_DIR` a larger disk',
  },
  SPOOL_OPEN_FAILED: {
    meaning: 'the spool could not be opened in `DATA_DIR/spool` (read-only or removed disk, no space, no permission); the message names `DATA_DIR` and the path',
    action: 'give `DATA_DIR` a writable directory on a disk with free space',
  },
  SPOOL_COMMIT_FAILED: {
    meaning: 'received messages could not be committed to the spool (a disk error, not a full spool): they are not acknowledged and the connection is closed, so that the publisher or broker sends them again',
    action: 'read `err`; if it repeats, check the disk of `DATA_DIR`',
  },
  SPOOL_READ_FAILED: { meaning: 'a sink could not read its next batch from the spool; it tries again', action: 'read `err`; if it repeats, check the disk of `DATA_DIR`' },
  SPOOL_ACK_FAILED: {
    meaning: 'delivered messages could not be recorded in the spool: the recording is retried with backoff, nothing new is sent to that sink meanwhile, and after a restart the unrecorded ones are sent again (same `message_id`)',
    action: 'read `err` (a disk error, or the file held by a `dlq` command); it clears by itself (`SPOOL_ACK_RECOVERED`)',
  },
  SPOOL_ACK_RECOVERED: { meaning: 'the spool records deliveries again after `SPOOL_ACK_FAILED`', action: 'nothing' },
  SPOOL_RECOUNT_FAILED: {
    meaning: 'the periodic recount of the spool\'s counters failed (the file locked by a `dlq` command, a disk error); it is tried again 30 s later',
    action: 'nothing unless it repeats; then check the disk of `DATA_DIR`',
  },
} satisfies Record<string, ErrorEntry>;

const SINKS = {
  SINK_START_FAILED: {
    meaning: 'a sink could not start (an invalid Pub/Sub topic name, a BigQuery table that does not fit or is missing with auto-create off); the node does not start',
    action: 'fix the topic or table the message names (docs/pubsub.md, docs/bigquery.md)',
  },
  SINK_FAILING: {
    meaning: 'a sink\'s writes fail for a reason a person must fix (a missing permission, topic or table, missing credentials): messages stay in the spool and are retried; logged at most once a minute per reason',
    action: 'fix what the line\'s `reason` and `detail` say; delivery resumes by itself (`SINK_RECOVERED`)',
  },
  SINK_DEGRADED: {
    meaning: 'a sink\'s writes fail for a passing reason (an outage, throttling, a timeout): the spool keeps the messages and the dispatcher retries with backoff',
    action: 'nothing unless it lasts; watch `mqtt_ingest_spool_oldest_age_seconds`',
  },
  SINK_BACKING_OFF: {
    meaning:
      'no message of a batch went through, so the dispatcher waits before the next attempt (logged at the 1st and every 10th failure in a row; `retryInMs` says how long, `reason` and `detail` why); the messages stay in the spool',
    action: 'read `detail`, and the Pub/Sub or BigQuery sink\'s `SINK_FAILING` or `SINK_DEGRADED` line; `/readyz` `components.sinks` shows the state',
  },
  SINK_RECOVERED: { meaning: 'a sink delivers again after `SINK_FAILING` or `SINK_DEGRADED`', action: 'nothing' },
  SINK_CLOSE_FAILED: {
    meaning: 'a sink did not close cleanly at the stop; what it had not delivered stays in the spool',
    action: 'nothing is lost; report it with the line if it repeats',
  },
  MESSAGE_DEAD_LETTERED: {
    meaning: 'a sink refused a message for good, its stored bytes no longer match their checksum (reason `corrupt`), or its route could not make it (reasons `field_invalid`, `decode_failed`, `no_route`: docs/routing.md): it is kept whole in the dead-letter store; the line gives the sink, reason, `message_id` and topic',
    action: 'fix the cause (the table\'s schema, the publisher, the routes file), then `mqtt-ingest dlq replay`; or `dlq purge` (docs/operations.md)',
  },
  SINK_DISABLED_DEAD_LETTERED: {
    meaning: 'messages were waiting for a sink that is no longer configured: at start they went to the dead-letter store (reason `sink_disabled`)',
    action: 'enable the sink again and `mqtt-ingest dlq replay --sink <sink>`, or `dlq purge --sink <sink>`',
  },
  PUBSUB_MESSAGE_REFUSED: {
    meaning: 'Pub/Sub cannot take a message (too large, an attribute too long, refused as invalid): it is dead-lettered',
    action: 'see the line\'s `reason` and `detail` (docs/pubsub.md); then as `MESSAGE_DEAD_LETTERED`',
  },
  BIGQUERY_CREATED: { meaning: 'the BigQuery sink created its dataset or table (`BIGQUERY_AUTO_CREATE`)', action: 'nothing' },
  BIGQUERY_COLUMNS_ADDED: { meaning: 'the BigQuery sink added NULLABLE columns (`columns`) through tables.patch (`BIGQUERY_AUTO_CREATE`): those its raw table lacked (a table made by an older version), or a route table the columns of new optional fields (docs/routing.md)', action: 'nothing' },
  BIGQUERY_TABLE_LAYOUT: {
    meaning: 'the BigQuery table is partitioned or clustered otherwise than the raw table (or its route\'s table); writes work, queries are slower or dearer',
    action: 'recreate the table with the layout of docs/bigquery.md when convenient',
  },
  REQUEST_TIMEOUT: {
    meaning: 'a BigQuery request (an insert, a table check) got no answer within the node\'s own time limit: it is retried; the sink is degraded with reason `timeout` and `detail` `REQUEST_TIMEOUT: …`',
    action: 'nothing unless it lasts; then check the network path to BigQuery (`BIGQUERY_API_ENDPOINT`)',
  },
  SPARKPLUG_SEQ_GAP: { meaning: 'a Sparkplug message\'s `seq` does not follow the previous message of its edge node (`group`, `edgeNode`, `expected`, `got`): messages were lost or reordered between the edge node and the node; counted in `mqtt_ingest_sparkplug_seq_gaps_total`, logged at most once a minute per edge node (`suppressed`: gaps since the last line)', action: 'check the edge node\'s connection and its broker\'s; with `SPARKPLUG_REBIRTH` on, metrics left unknown make the node ask for a rebirth' },
  SPARKPLUG_STALE_DEATH: { meaning: 'an NDEATH whose `bdSeq` is not that of the NBIRTH in effect (`group`, `edgeNode`, `bdSeq`, `birthBdSeq`): the death of an earlier session, delivered late; the node ignores it', action: 'nothing; frequent ones mean an edge node reconnecting quickly' },
  SPARKPLUG_REBIRTH_FAILED: { meaning: 'a rebirth command (NCMD `Node Control/Rebirth`) could not be published (`group`, `edgeNode`, `reason`: `unavailable` while the broker or the subscriber connection is down, `refused`, `lost`, `busy`); the waiting messages are written unresolved after their wait', action: 'see `reason`; in mosquitto mode the node may write `spBv1.0/#` on its own broker, on an external broker give its user that right' },
  SPARKPLUG_REBIRTH_REQUESTED: { meaning: '`SPARKPLUG_REBIRTH` on: data of an edge node came with aliases no birth names, or before any birth (`reason`): the node published an NCMD `Node Control/Rebirth` to it and holds its messages for the new birth until `waitMs` has passed', action: 'nothing if it is rare; repeated for one edge node, check that it answers rebirth commands' },
  SOURCES_STATE_DAMAGED: { meaning: 'the source table `DATA_DIR/sources.db` (last message per topic, for silent sources) could not be read at start; it was set aside (`setAside`) and the table starts empty; messages are not affected', action: 'nothing; topics reappear as they publish; keep the set-aside file for a bug report' },
  SOURCES_SAVE_FAILED: { meaning: 'the source table could not be written to `DATA_DIR/sources.db` (a full disk, most likely); it is tried again every 10 s, and what was not saved is lost only if the node stops meanwhile', action: 'free disk space on `DATA_DIR`' },
  FILE_SINK_PARTIAL_LINE: { meaning: 'the file sink removed a partial line left by a crash; its messages are written again', action: 'nothing; as after any crash, readers of the files may see some messages twice (same `message_id`)' },
} satisfies Record<string, ErrorEntry>;

const SUBSCRIBER = {
  SUBSCRIBER_DISCONNECTED: {
    meaning: 'the node\'s subscriber lost its connection to the broker, or the broker ended it; it reconnects with backoff',
    action: 'nothing unless it repeats; then read `reason` and check the broker',
  },
  SUBSCRIBER_REFUSED: {
    meaning: 'the broker refused the subscriber\'s connection (credentials, client id)',
    action: 'fix `MQTT_USERNAME`, `MQTT_PASSWORD` or `MQTT_CLIENT_ID` for the external broker',
  },
  SUBSCRIPTION_REFUSED: {
    meaning: 'the broker refused some of the subscriber\'s subscriptions; their messages are not received',
    action: 'check the broker\'s ACL for the subscriber and `MQTT_TOPICS`',
  },
  SUBSCRIPTION_QOS0: { meaning: 'the broker granted QoS 0 only: those messages are not redelivered after a crash', action: 'allow QoS 1 for the subscriber at the broker' },
  SUBSCRIBER_SESSION_LOST: {
    meaning: 'the broker had no session for the subscriber\'s client id: messages published while the node was away may not have been queued',
    action: 'check that the broker keeps sessions (persistence, `MQTT_SESSION_EXPIRY_SECONDS`) and that `MQTT_CLIENT_ID` is stable',
  },
  SESSION_HANDED_OVER: {
    meaning: 'at start the node found, for the same broker, a session it held under an earlier client id (`MQTT_CLIENT_ID` changed, or the default derived from another host name): it connected with that id (`oldClientId`), stored what the broker had queued or in flight for it (`messages`, each acknowledged after its commit), unsubscribed its filters (a share group no longer hands it a turn) and had the broker discard it, in `ms`',
    action: 'nothing',
  },
  SESSION_HANDOVER_FAILED: {
    meaning: 'the node could not take over the session it held under an earlier client id (`oldClientId`): `reason` says why (refused by the broker, unreachable, no progress within 30 s, the node stopping); `messages` says how many it stored before it gave up. The node\'s own subscription is not affected; the next start tries again, and until then the broker may go on queueing messages for the old session',
    action: 'read `reason`; let the broker accept the old client id with the node\'s credentials, then restart the node',
  },
  SUBSCRIBER_LOOP_FAILED: {
    meaning: 'the subscriber stopped reconnecting after an unexpected error (a bug); readiness fails',
    action: 'report it with the line; restart the node',
  },
} satisfies Record<string, ErrorEntry>;

const HTTP = {
  HTTP_START_FAILED: {
    meaning: 'the HTTP server could not listen: `PORT` in use, a port below 1024 without the right, or an `HTTP_HOST` that is not an address of this machine',
    action: 'set `PORT` or `HTTP_HOST` to what the message suggests',
  },
  HTTP_LISTENING: { meaning: 'the HTTP server listens; the line gives the host and the port', action: 'nothing' },
  HTTP_HANDLER_FAILED: { meaning: 'an HTTP request failed inside the node (answered 500)', action: 'report it with the line (`url`, `err`)' },
  HTTP_SERVER_ERROR: { meaning: 'the HTTP server reported an error after it started listening', action: 'read `err`; report it if it repeats' },
} satisfies Record<string, ErrorEntry>;

const COMMANDS = {
  CLI_USAGE: {
    meaning: 'a command was given options it cannot use; the line says which; nothing was done (exit 2, or 1 for `dlq purge` and the option parser\'s own errors)',
    action: 'correct the command line (`mqtt-ingest <command> --help`)',
  },
  DLQ_SPOOL_MISSING: {
    meaning: '`dlq`: there is no spool file at `DATA_DIR/spool/spool.db`; nothing was read or created',
    action: 'run `dlq` with the environment or `--config` of the node\'s `run`, so that `DATA_DIR` is the node\'s',
  },
  DLQ_NOT_A_SPOOL: {
    meaning: '`dlq`: the file at `DATA_DIR/spool/spool.db` is not an mqtt-ingest spool, or SQLite cannot read it (its code is in the message)',
    action: 'check that `DATA_DIR` is the node\'s; the message gives SQLite\'s own code',
  },
  DLQ_NO_MATCH: {
    meaning: '`dlq replay --id` or `dlq purge --id`: an id names no dead letter, or one of another sink or of a sink not enabled here; nothing was changed',
    action: 'take the ids from `mqtt-ingest dlq list`',
  },
  DLQ_SINK_DISABLED: {
    meaning: '`dlq replay`: the sink is not enabled in this configuration, so its dead letters could not be delivered; nothing was replayed',
    action: 'enable the sink (the message names its variables), or run with the node\'s configuration',
  },
  DLQ_NOTHING_REPLAYED: { meaning: '`dlq replay`: the spool holds no dead letters of the sinks enabled here', action: 'nothing, or enable the sink the message names' },
  DLQ_SPOOL_BUSY: {
    meaning: '`dlq replay` or `dlq purge`: another connection held the spool\'s write lock for the whole 5 s wait; nothing was changed',
    action: 'look for another `dlq` command or a process stuck in a transaction on the spool file, then run it again',
  },
  PASSWD_FAILED: {
    meaning: '`passwd` changed nothing: a bad user name, an unreadable file, a user not in it, an empty or mistyped password',
    action: 'fix what the line says and run it again',
  },
  DEPLOY_RENDER_FAILED: { meaning: '`deploy render` found a malformed file in `deploy/environments/`', action: 'fix the file and section the message names' },
  DEPLOY_FILES_STALE: {
    meaning: '`deploy render --check`: a committed descriptor differs from what `deploy/environments/` renders',
    action: 'run `mqtt-ingest deploy render --write` and commit the result',
  },
  GOOGLE_CREDENTIALS_MISSING: {
    meaning: '`provision` or `smoke`: no Google credentials where a Google endpoint is called; nothing was asked',
    action: '`gcloud auth application-default login`, or `GOOGLE_APPLICATION_CREDENTIALS` naming a key file, or run where a service account is attached',
  },
  SERVICE_TIMEOUT: {
    meaning: '`provision` or `smoke`: a service did not answer within `--timeout`, or could not be reached at all (connection refused, a name that does not resolve); it is not asked again in that run (its other steps say `not asked`)',
    action: 'check the endpoint the message names (emulator address, proxy, firewall)',
  },
  PROVISION_INCOMPLETE: {
    meaning: '`provision`: a resource could not be made or differs from what the node needs, or a permission is missing; each line says which (exit 1)',
    action: 'fix what the `failed`, `differs` and `missing` lines name, then run it again (docs/operations.md, "First deploy of an environment")',
  },
  PROVISION_FAILED: {
    meaning: '`provision` could not run its checks (impersonation refused, an unexpected answer); the message says what',
    action: 'grant `roles/iam.serviceAccountTokenCreator` on the node\'s account for `--service-account`, or fix what the message names',
  },
  SMOKE_FAILED: {
    meaning: '`smoke`: the marked message did not arrive, arrived changed, or could not be sent; or the verification subscription cannot be read (then nothing was published)',
    action: 'fix what the lines say (`provision --verification-subscription`, `roles/pubsub.subscriber`, the broker\'s credentials), then run it again',
  },
  DOCS_WRITE_FAILED: {
    meaning: '`docs bigquery-schema --write` could not update the file (unreadable, or without the generated section\'s markers)',
    action: 'check the path and that the file has its markers',
  },
} satisfies Record<string, ErrorEntry>;

/** The table in sections, as docs/errors.md shows it. */
export const ERROR_SECTIONS: readonly { title: string; codes: Record<string, ErrorEntry> }[] = [
  { title: 'The node: start, stop and crashes', codes: NODE },
  { title: 'Configuration and secrets', codes: CONFIGURATION },
  { title: 'The spool', codes: SPOOL },
  { title: 'Sinks and dead letters', codes: SINKS },
  { title: 'The broker', codes: BROKER },
  { title: "The node's subscriber (mosquitto and external modes)", codes: SUBSCRIBER },
  { title: 'HTTP endpoints', codes: HTTP },
  { title: 'Commands', codes: COMMANDS },
];

export const ERRORS = { ...NODE, ...CONFIGURATION, ...SPOOL, ...SINKS, ...BROKER, ...SUBSCRIBER, ...HTTP, ...COMMANDS };

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}

/**
 * A log line's fields with its catalogued `code` first, checked at compile time:
 * `logger.error(withCode('SPOOL_COMMIT_FAILED', { err: err.message }), 'spool commit failed: …')`.
 */
export function withCode<T extends Record<string, unknown>>(code: ErrorCode, fields?: T): { code: ErrorCode } & T {
  return { code, ...(fields as T) };
}
