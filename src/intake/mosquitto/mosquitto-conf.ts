import path from 'node:path';
import { BrokerError } from '../../core/errors.js';
import type { BrokerSecurity } from '../security/policy.js';

/**
 * Renders the mosquitto.conf of the supervised broker (Mosquitto 2.0). A pure function: the caller writes it.
 *
 * Facts about Mosquitto 2.0.11 found while writing this (each checked against the real binary):
 * - `log_dest stdout` is block-buffered when stdout is a pipe: Mosquitto never flushes it, so lines arrive
 *   in 4 KiB bursts or only at exit, and a SIGKILLed broker loses them. stderr is unbuffered, so we log there.
 * - `listener <port> ::` is IPv6-only (Mosquitto sets IPV6_V6ONLY), so 127.0.0.1 is refused. A listener
 *   without an address opens one IPv4 and one IPv6 socket; we render that for `::`.
 * - Durations of `persistent_client_expiration` take the units h d w m y, and `m` means MONTHS; seconds and
 *   minutes are rejected ("Invalid persistent_client_expiration duration").
 * - Errors in the config file itself are printed to stderr with an epoch timestamp before any log option
 *   applies, and Mosquitto exits with status 3.
 * - Run as root, Mosquitto switches to the user `mosquitto` unless `user` names another; `user root` keeps
 *   root (with the warning "Mosquitto should not be run as root/administrator." on stderr).
 * - Client ids are global across listeners: a client on any listener that connects with another client's id
 *   takes over that session (queued messages included), even as another user. Nothing in 2.0.11's password or
 *   ACL files binds an id to a user, so the node's subscriber uses an id no one else knows (mosquitto.ts).
 * - `max_connections` counts a connection before its CONNECT, and 2.0.11 also decrements its count for each
 *   connection it refuses, so after N refusals a listener admits N more than the limit until it restarts.
 * - A TLS listener needs no `cafile` unless client certificates are required; SIGHUP reloads the certificate,
 *   key and CA files, the password file and the ACL file, and keeps connected clients whose credentials
 *   still pass (measured against the real broker).
 * - A connection that never sends CONNECT is closed after 1.5 × 60 s ("has exceeded timeout"); the limit is
 *   not configurable in 2.0.11.
 * - The Debian build of 2.0.11 has no WebSockets ("Opening websockets listen socket" then "Unable to start any
 *   listening sockets"), so the node serves MQTT_WS_PORT itself and relays each connection to a loopback listener.
 */
export interface MosquittoConfOptions {
  /** Address to listen on; `0.0.0.0` is IPv4 only, `::` means every address of both families. */
  host: string;
  port: number;
  /** The node's DATA_DIR (absolute); the broker keeps its database in `<dataDir>/mosquitto/`. */
  dataDir: string;
  /** The OS user the node runs as, so that a root-started broker can write the DATA_DIR the node owns. */
  user: string;
  /** QoS 1/2 messages in flight (sent, not yet acknowledged) per client. Default 1000. */
  maxInflightMessages?: number;
  /** QoS 1/2 messages queued per client beyond those in flight. Default 1 000 000. */
  maxQueuedMessages?: number;
  /** How long a disconnected persistent session is kept: an integer and one of h d w m(onth) y. Default 14d. */
  persistentClientExpiration?: string;
  /**
   * Seconds between saves of the in-memory database. Default 5: Mosquitto acknowledges publishers on receipt,
   * so a crash of the whole container loses what it acknowledged and neither saved nor handed to the node
   * (docs/security.md, "What each broker mode guarantees"). 0 saves only at exit.
   */
  autosaveIntervalS?: number;
  /** Keep sessions and queued messages on disk. Default true (false only for throw-away test brokers). */
  persistence?: boolean;
  /**
   * The listeners and their security (docs/security.md). Omitted: one plaintext listener on host:port that
   * takes anonymous clients (standalone test brokers).
   */
  security?: BrokerSecurity;
  /** The loopback listener of the node's own clients (subscriber, $SYS reader) and its files. */
  internal?: { port: number; passwordFile: string; aclFile: string };
  /** A loopback listener for the WebSocket connections the node relays (MQTT_WS_PORT). */
  wsRelayPort?: number;
  /** Seconds between $SYS updates. Default 10. */
  sysIntervalS?: number;
  /** Queue QoS 0 messages for disconnected persistent sessions too (`queue_qos0_messages`). Default true. */
  queueQos0Messages?: boolean;
  /**
   * Only the loopback listener of the node's own clients (`internal`): `mqtt-ingest leave` (mosquitto.ts,
   * closePublicListeners). The publishers' listeners and the WebSocket relay listener are left out.
   */
  loopbackOnly?: boolean;
}

export const MOSQUITTO_CONF_DEFAULTS = {
  sysIntervalS: 10,
  maxInflightMessages: 1000,
  maxQueuedMessages: 1_000_000,
  persistentClientExpiration: '14d',
  autosaveIntervalS: 5,
  queueQos0Messages: true,
} as const;

/** Where the supervised broker keeps its files inside DATA_DIR. */
export function mosquittoPaths(dataDir: string): { dir: string; conf: string; pidFile: string; db: string } {
  const dir = path.join(dataDir, 'mosquitto');
  return {
    dir,
    conf: path.join(dir, 'mosquitto.conf'),
    pidFile: path.join(dir, 'mosquitto.pid'),
    db: path.join(dir, 'mosquitto.db'),
  };
}

type Resolved = MosquittoConfOptions & Required<Omit<MosquittoConfOptions, 'security' | 'internal' | 'wsRelayPort' | 'loopbackOnly'>>;

export function renderMosquittoConf(opts: MosquittoConfOptions): string {
  const o: Resolved = { ...MOSQUITTO_CONF_DEFAULTS, persistence: true, ...opts };
  const problems = checkOptions(o);
  if (problems.length > 0) {
    throw new BrokerError('BROKER_START_FAILED', `cannot render mosquitto.conf: ${problems.join('; ')}`, {
      context: { problems },
    });
  }
  const { dir } = mosquittoPaths(o.dataDir);
  const lines = [
    '# Rendered by mqtt-ingest at every start; edits are overwritten.',
    '',
    '# Started as root, Mosquitto drops to the user `mosquitto` unless told otherwise, and that user cannot',
    '# write a DATA_DIR owned by the node. Ignored when not started as root.',
    `user ${o.user}`,
    '',
    '# Persistent sessions and their queued QoS 1 messages survive a broker restart.',
    `persistence ${o.persistence}`,
    '# Mosquitto 1.x joined location and file name without a separator, so the trailing slash matters there;',
    '# 2.0 adds one itself.',
    `persistence_location ${dir}/`,
    '# The database is only written at autosave and on a clean exit (SIGTERM/SIGINT; SIGUSR1 forces a save):',
    '# a SIGKILLed broker loses messages it acknowledged since the last save and had not handed to the node.',
    '# Each save rewrites the whole database (then fsync and rename) on the broker\'s only thread, so it stalls',
    '# every client for the save\'s duration: milliseconds while the node keeps up (queues near empty), roughly',
    '# 0.2-0.4 s per 100 MB queued while the node is behind (measured with 2.0.11). Time-based, not counting: with',
    '# autosave_on_changes the interval would count messages, saving the whole database every N messages.',
    `autosave_interval ${o.autosaveIntervalS}`,
    'autosave_on_changes false',
    '',
    '# Mosquitto silently drops QoS 1/2 messages for a client beyond 1000 queued by default: during a slow',
    '# spool or a node restart that would lose acknowledged messages. Bound the queue by count only, far above.',
    `max_queued_messages ${o.maxQueuedMessages}`,
    'max_queued_bytes 0',
    '# The default of 20 unacknowledged messages per client throttles a subscriber that acks after a commit.',
    `max_inflight_messages ${o.maxInflightMessages}`,
    '# QoS 0 messages (Sparkplug B publishes everything at QoS 0) are queued too for a persistent session while it is',
    '# disconnected, so the node\'s session keeps them while the node restarts, and they are saved with the database.',
    '# Global: every offline persistent session with a matching subscription gets them, delivered when it returns.',
    '# Measured with 2.0.11: max_queued_messages does not bound queued QoS 0 messages (only QoS 1/2 count), so with',
    '# max_queued_bytes 0 nothing but memory does (docs/operations.md, "QoS 0 while the node restarts").',
    `queue_qos0_messages ${o.queueQos0Messages}`,
    '# Sensors with clean=false and a random client id leave sessions that never reconnect; expire them.',
    '# Units: h d w m y, where m is months (seconds and minutes are not accepted).',
    `persistent_client_expiration ${o.persistentClientExpiration}`,
    '',
    ...renderListeners(o),

    '# The node relays each line into its JSON log. stderr, not stdout: Mosquitto never flushes stdout, which',
    '# is block-buffered on a pipe, so lines would arrive late or (after a SIGKILL) never.',
    'log_dest stderr',
    '# The node timestamps every relayed line itself.',
    'log_timestamp false',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    'connection_messages true',
    '',
    '# Send small QoS 1 packets (PUBACKs, short sensor messages) at once instead of waiting for Nagle.',
    'set_tcp_nodelay true',
    '# The node reads clients connected, messages dropped and the store size from $SYS (mosquitto-sys.ts).',
    `sys_interval ${o.sysIntervalS}`,
    '',
  ];
  return lines.join('\n');
}

/** `::` renders as a listener without an address: `listener <port> ::` would be IPv6-only. */
function listenerLine(port: number, host: string): string {
  return host === '::' ? `listener ${port}` : `listener ${port} ${host}`;
}

function renderListeners(o: Resolved): string[] {
  const s = o.security;
  if (!s) {
    return [
      '# `listener <port> ::` would be IPv6-only, so `::` renders as a listener without an address (both families).',
      listenerLine(o.port, o.host),
      '# Mosquitto 2.0 refuses anonymous clients on an explicit listener unless this is set.',
      'allow_anonymous true',
      '',
    ];
  }
  // Each listener's own password file, ACL and anonymous setting (per_listener_settings), so the node's
  // internal user exists only on its loopback listener and the operator's users only on the others.
  const auth = (identityFromCert: boolean) => [
    `allow_anonymous ${s.allowAnonymous}`,
    // With use_identity_as_username Mosquitto does not read the password file for that listener.
    ...(s.authFile && !identityFromCert ? [`password_file ${s.authFile}`] : []),
    ...(s.aclFile ? [`acl_file ${s.aclFile}`] : []),
  ];
  const lines = [
    'per_listener_settings true',
    '# Over MQTT_MAX_PACKET_BYTES, a client is disconnected ("disconnected due to oversize packet").',
    `max_packet_size ${s.maxPacketBytes}`,
    '',
  ];
  if (o.internal) {
    lines.push(
      "# The node's own clients (its subscriber and $SYS reader), on loopback only, with a user that exists only here.",
      `listener ${o.internal.port} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${o.internal.passwordFile}`,
      `acl_file ${o.internal.aclFile}`,
      '',
    );
  }
  if (o.loopbackOnly) {
    lines.push('# mqtt-ingest leave: the publishers\' listeners are closed; the node takes what is left through the one above.', '');
    return lines;
  }
  if (s.plaintextPort !== undefined) {
    lines.push('# Plaintext MQTT (MQTT_PLAINTEXT).', listenerLine(s.plaintextPort, s.host), `max_connections ${s.maxConnections}`, ...auth(false), '');
  }
  if (s.tls) {
    const t = s.tls;
    lines.push(
      '# MQTT over TLS (MQTT_TLS_PORT).',
      listenerLine(t.port, s.host),
      `max_connections ${s.maxConnections}`,
      `certfile ${t.certFile}`,
      `keyfile ${t.keyFile}`,
      ...(t.requireClientCert && t.caFile ? [`cafile ${t.caFile}`, 'require_certificate true'] : []),
      ...(s.identityFromCert ? ['# The client certificate\'s Common Name is the user name (for the ACL).', 'use_identity_as_username true'] : []),
      ...auth(s.identityFromCert),
      '',
    );
  }
  if (o.wsRelayPort !== undefined) {
    lines.push(
      '# WebSocket clients (MQTT_WS_PORT), relayed by the node after any TLS handshake; loopback only.',
      `listener ${o.wsRelayPort} 127.0.0.1`,
      ...auth(false),
      '',
    );
  }
  return lines;
}

function checkOptions(o: Resolved): string[] {
  const problems: string[] = [];
  // One option per line: a newline in a value would smuggle in another directive.
  for (const [name, value] of Object.entries({ host: o.host, dataDir: o.dataDir, user: o.user })) {
    if (value.length === 0 || /[\r\n\0]/.test(value)) problems.push(`${name} must be a non-empty single line`);
  }
  if (o.loopbackOnly && (!o.security || !o.internal)) problems.push('loopbackOnly needs the internal listener (and its security)');
  if (/\s/.test(o.host)) problems.push(`host must not contain spaces: ${JSON.stringify(o.host)}`);
  if (/\s/.test(o.user)) problems.push(`user must not contain spaces: ${JSON.stringify(o.user)}`);
  if (!path.isAbsolute(o.dataDir)) problems.push(`dataDir must be absolute, got ${JSON.stringify(o.dataDir)}`);
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) problems.push(`port must be 1-65535, got ${o.port}`);
  for (const file of [o.security?.authFile, o.security?.aclFile, o.security?.tls?.certFile, o.security?.tls?.keyFile, o.security?.tls?.caFile, o.internal?.passwordFile, o.internal?.aclFile]) {
    if (file !== undefined && (!path.isAbsolute(file) || /[\r\n\0]/.test(file))) problems.push(`file paths must be absolute single lines, got ${JSON.stringify(file)}`);
  }
  for (const [name, value] of Object.entries({
    sysIntervalS: o.sysIntervalS,
    maxInflightMessages: o.maxInflightMessages,
    maxQueuedMessages: o.maxQueuedMessages,
    autosaveIntervalS: o.autosaveIntervalS,
  })) {
    // 0 means "no limit" (or "save only at exit") to Mosquitto; allowed but never a default.
    if (!Number.isInteger(value) || value < 0) problems.push(`${name} must be a non-negative integer, got ${value}`);
  }
  if (!/^[1-9][0-9]*[hdwmy]$/.test(o.persistentClientExpiration)) {
    problems.push(
      `persistentClientExpiration must be an integer and one of h d w m y (m = months), got ${JSON.stringify(o.persistentClientExpiration)}`,
    );
  }
  return problems;
}
