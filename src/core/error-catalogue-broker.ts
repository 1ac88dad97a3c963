import type { ErrorEntry } from './error-entry.js';

/** The brokers' codes (both own-broker modes and the embedded broker's state): a section of error-catalogue.ts. */
export const BROKER = {
  BROKER_START_FAILED: {
    meaning: 'the broker did not start (port taken, bad certificate, no Mosquitto, `MQTT_WS_PORT` in mosquitto mode where the user name comes from the client certificate)',
    action: 'fix what the message names; docs/security.md for the listeners and certificates',
  },
  BROKER_LISTENING: { meaning: 'the broker takes connections, after a start or a restart; the line gives its listeners or address', action: 'nothing' },
  BROKER_LOOPBACK_ONLY: {
    meaning: '`mqtt-ingest leave` in mosquitto mode: the supervised Mosquitto was restarted with only the loopback listener of the node\'s own subscriber (its database kept), so publishers are disconnected and refused; restarts after a crash keep it so',
    action: 'nothing; the publishers reconnect through the load balancer to another node',
  },
  BROKER_RELOADED: {
    meaning: 'SIGHUP: the broker reloaded its password file, ACL file and certificates; clients whose credentials no longer pass are disconnected',
    action: 'nothing',
  },
  BROKER_RELOAD_FAILED: {
    meaning: 'SIGHUP reloaded nothing: a password file, ACL file or certificate did not pass its check (or the supervised Mosquitto was not running); the previous users, ACL and certificates stay in force',
    action: 'fix the file the line names and send SIGHUP again (`mqtt_ingest_broker_reloads_total{result="failed"}` counts these)',
  },
  BROKER_CRASH_LOOP: {
    meaning: 'the supervised broker kept dying; liveness fails so the platform restarts the node',
    action: 'read the broker\'s last lines before each exit (docs/runbook.md, "Broker crash loop")',
  },
  BROKER_DIED: {
    meaning: 'the supervised Mosquitto exited or was killed while running; the line has its last output lines; it is restarted with backoff',
    action: 'read `lastLines`; repeated deaths end in `BROKER_CRASH_LOOP`',
  },
  BROKER_RESTART_FAILED: {
    meaning: 'a restart of the supervised Mosquitto failed; it is tried again with backoff',
    action: 'read `err`; repeated failures end in `BROKER_CRASH_LOOP`',
  },
  BROKER_UNRESPONSIVE: {
    meaning: 'the supervised Mosquitto answered none of its probes: it is killed (SIGKILL) and restarted',
    action: 'nothing unless it repeats; then look for a full or failing disk (docs/runbook.md, "Broker hangs")',
  },
  BROKER_PROBE_FAILED: { meaning: 'one probe of the supervised Mosquitto went unanswered or was refused; several in a row make `BROKER_UNRESPONSIVE`', action: 'nothing' },
  BROKER_SUPERVISION_FAILED: {
    meaning: 'a step of the Mosquitto supervision failed after the broker exited (a bug)',
    action: 'report it with the line; restart the node if the broker stays down',
  },
  BROKER_LEFTOVER: { meaning: 'a Mosquitto left running by a previous node on the same `DATA_DIR` (after a SIGKILL) is stopped before the new one starts', action: 'nothing' },
  BROKER_FORCE_KILLED: {
    meaning: 'the supervised Mosquitto ignored SIGTERM (at the stop, or when it did not start in time) and was killed (SIGKILL) after its grace period',
    action: 'nothing; the spool holds every acknowledged message',
  },
  BROKER_PID_FILE_FAILED: {
    meaning: 'the supervised Mosquitto\'s pid file could not be removed; the next start ignores it once that process is gone',
    action: 'nothing; if it repeats, check the permissions of `DATA_DIR`',
  },
  BROKER_MESSAGES_DROPPED: {
    meaning: 'Mosquitto dropped messages for full client queues (`max_queued_messages`); a dropped message for the node\'s subscriber is lost',
    action: 'find the slow client; if it is the node\'s subscriber, check the spool and the disk',
  },
  BROKER_METRICS_STALE: {
    meaning: 'the node cannot read Mosquitto\'s `$SYS` topics, so the broker metrics stay stale',
    action: 'nothing for the messages; report it if it repeats',
  },
  BROKER_ERROR: { meaning: 'the embedded broker (Aedes) reported an error', action: 'read `err`; report it if it repeats' },
  CLIENT_REFUSED: {
    meaning: 'the broker refused or closed a client\'s connection before it could publish; `reason` says why (bad user name or password, `packet_too_large`, `malformed`, `connect_timeout`, …)',
    action: 'fix the client, its credentials or the password and ACL files (docs/security.md); many at once may be a flood (docs/runbook.md, "Memory and floods")',
  },
  INBOUND_REJECTED: {
    meaning: 'the embedded broker refused a client\'s PUBLISH (the line\'s `reason`: the ACL, a `$SYS` or invalid topic); the message says whether it was acknowledged and dropped or the connection closed; at most one line per reason every 10 s',
    action: 'find the client (`clientId`) and fix what it sends or the ACL',
  },
  RETAINED_LIMIT_REACHED: {
    meaning: '`MQTT_MAX_RETAINED_MESSAGES` or `MQTT_MAX_RETAINED_BYTES` is reached: a retained message is stored and delivered but not kept for later subscribers',
    action: 'raise the limit, or have publishers retain less',
  },
  TLS_CERT_EXPIRING: {
    meaning: 'a TLS certificate of the broker expires within 14 days; said at most once a day',
    action: 'replace the files and send SIGHUP, or add new secret versions and restart (docs/runbook.md, "Certificate expiry")',
  },
  PASSWORD_FILE_INVALID: {
    meaning: 'the embedded broker could not load its password file at start (normally reported earlier, as `CONFIG_INVALID`; at SIGHUP it is `BROKER_RELOAD_FAILED`)',
    action: 'fix the file (`mqtt-ingest passwd`) and start again, or send SIGHUP',
  },
  ACL_FILE_INVALID: {
    meaning: 'the embedded broker could not load its ACL file at start (normally reported earlier, as `CONFIG_INVALID`; at SIGHUP it is `BROKER_RELOAD_FAILED`)',
    action: 'fix the lines the message names and start again, or send SIGHUP',
  },
  BROKER_STATE_DAMAGED: { meaning: "the embedded broker's state file (`DATA_DIR/broker/state.db`: other subscribers' sessions and queued messages, retained messages, wills) could not be read at start; the node set it aside (`setAside`) and started with an empty state. The spool is not affected", action: 'nothing for the messages taken; subscribers through the node resubscribe (their sessions are gone) and retained messages come back as publishers send them; keep the set-aside file for a bug report' },
  BROKER_QUEUE_FULL: { meaning: "the embedded broker did not queue messages for a disconnected persistent session whose queue holds `MQTT_MAX_QUEUED_MESSAGES` (`clientId`, `dropped`); they are stored in the spool; counted in `mqtt_ingest_broker_queued_dropped_total`, logged at most once per 10 s", action: 'a subscriber that is gone for good: end its session (connect once with clean session); one that lags: raise the limit' },
  BROKER_SESSION_EXPIRED: { meaning: "the embedded broker ended a disconnected persistent session whose expiry passed (the MQTT 5 Session Expiry Interval, at most `MQTT_MAX_SESSION_EXPIRY_SECONDS`; for MQTT 3.1.1 that limit), with its subscriptions and queued messages (`clientId`, `queued`)", action: 'nothing; raise `MQTT_MAX_SESSION_EXPIRY_SECONDS` if subscribers stay away longer' },
} satisfies Record<string, ErrorEntry>;

