import { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../core/metrics.js';

/**
 * Why the broker refused or dropped a connection; a fixed vocabulary (metric labels never carry client input):
 * - `not_authorized`: bad or unknown user name or password, anonymous when not allowed, a reserved client id
 * - `bad_protocol`: a CONNECT with another protocol name or an unsupported version
 * - `malformed`: bytes that are not MQTT, a first packet other than CONNECT, or (embedded) a client id, user name,
 *   will topic or topic filter that is not valid UTF-8 or holds U+0000 (MQTT-1.5.3-1, -2)
 * - `packet_too_large`: a packet above MQTT_MAX_PACKET_BYTES
 * - `connect_too_large`: (embedded) a first packet (the CONNECT) above MQTT_MAX_CONNECT_BYTES
 * - `partial_packet_budget`: (embedded) an incomplete packet whose bytes would take the total held for incomplete
 *   packets of all connections above MQTT_MAX_PARTIAL_BYTES
 * - `partial_packet_timeout`: (embedded) an incomplete packet that received no byte for
 *   MQTT_PARTIAL_PACKET_TIMEOUT_SECONDS, or none complete within 1.5 × the client's keep-alive
 * - `connect_timeout`: a connection that sent no CONNECT in time
 * - `max_connections`: over MQTT_MAX_CONNECTIONS on that listener
 * - `tls`: a failed TLS handshake (no or untrusted client certificate, not TLS at all)
 */
export const REFUSAL_REASONS = [
  'not_authorized',
  'bad_protocol',
  'malformed',
  'packet_too_large',
  'connect_too_large',
  'partial_packet_budget',
  'partial_packet_timeout',
  'connect_timeout',
  'max_connections',
  'tls',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/**
 * Why the embedded broker did not keep a retained message (it is still stored in the spool and delivered to the
 * subscribers connected at the time): `max_messages` (MQTT_MAX_RETAINED_MESSAGES) or `max_bytes`
 * (MQTT_MAX_RETAINED_BYTES).
 */
export const RETAINED_REFUSAL_REASONS = ['max_messages', 'max_bytes'] as const;
export type RetainedRefusalReason = (typeof RETAINED_REFUSAL_REASONS)[number];

/** The broker's metrics (names start `mqtt_ingest_broker_`, and the TLS expiry), registered once per registry. */
export class BrokerMetrics {
  readonly connectionsRefused: Counter<'reason'>;
  readonly clientsConnected: Gauge;
  readonly messagesDropped: Gauge;
  readonly storeMessages: Gauge;
  readonly storeBytes: Gauge;
  readonly messagesReceived: Gauge;
  readonly messagesSent: Gauge;
  readonly tlsCertExpiry: Gauge<'cert'>;
  readonly reloads: Counter<'result'>;
  readonly partialPacketBytes: Gauge;
  /** What mqtt_ingest_broker_partial_packet_bytes reads at a scrape; the embedded broker sets it. */
  partialPacketBytesNow: () => number = () => 0;
  readonly retainedMessages: Gauge;
  readonly retainedBytes: Gauge;
  readonly retainedRefused: Counter<'reason'>;
  readonly queuedDropped: Counter;
  /** What the embedded broker's state gauges read at a scrape (broker-state.ts sets it). */
  stateNow: () => { sessions: number; queuedMessages: number; bytes: number } | undefined = () => undefined;

  constructor(metrics: Metrics) {
    const registers = [metrics.registry];
    this.connectionsRefused = new Counter({
      name: 'mqtt_ingest_broker_connections_refused_total',
      help: 'Connections the broker refused at CONNECT, or closed for what they sent, per reason.',
      labelNames: ['reason'] as const,
      registers,
    });
    // Every reason shows from the start, at 0, so a dashboard can rate() it before the first refusal.
    for (const reason of REFUSAL_REASONS) this.connectionsRefused.inc({ reason }, 0);
    this.clientsConnected = new Gauge({
      name: 'mqtt_ingest_broker_clients_connected',
      help: "Clients connected to the node's broker (Mosquitto: $SYS/broker/clients/connected, the node's own included).",
      registers,
    });
    this.messagesDropped = new Gauge({
      name: 'mqtt_ingest_broker_messages_dropped',
      help: 'Messages Mosquitto dropped for full client queues since it started ($SYS/broker/publish/messages/dropped).',
      registers,
    });
    this.storeMessages = new Gauge({
      name: 'mqtt_ingest_broker_store_messages',
      help: "Messages held in Mosquitto's store ($SYS/broker/store/messages/count).",
      registers,
    });
    this.storeBytes = new Gauge({
      name: 'mqtt_ingest_broker_store_bytes',
      help: "Payload bytes held in Mosquitto's store ($SYS/broker/store/messages/bytes).",
      registers,
    });
    this.messagesReceived = new Gauge({
      name: 'mqtt_ingest_broker_messages_received',
      help: 'MQTT packets Mosquitto received since it started ($SYS/broker/messages/received).',
      registers,
    });
    this.messagesSent = new Gauge({
      name: 'mqtt_ingest_broker_messages_sent',
      help: 'MQTT packets Mosquitto sent since it started ($SYS/broker/messages/sent).',
      registers,
    });
    this.tlsCertExpiry = new Gauge({
      name: 'mqtt_ingest_tls_cert_expiry_seconds',
      help: 'Seconds until the earliest certificate of the file expires (negative once expired): cert="server" (MQTT_TLS_CERT) or "client_ca" (MQTT_TLS_CA).',
      labelNames: ['cert'] as const,
      registers,
    });
    this.reloads = new Counter({
      name: 'mqtt_ingest_broker_reloads_total',
      help: 'SIGHUP reloads of the password file, ACL file and certificates, per result (ok, failed).',
      labelNames: ['result'] as const,
      registers,
    });
    const partial = this;
    this.partialPacketBytes = new Gauge({
      name: 'mqtt_ingest_broker_partial_packet_bytes',
      help: 'Bytes of incomplete packets the embedded broker holds for all connections (at most MQTT_MAX_PARTIAL_BYTES).',
      registers,
      // Read at each scrape: the count changes with every socket read.
      collect() {
        this.set(partial.partialPacketBytesNow());
      },
    });
    this.retainedMessages = new Gauge({
      name: 'mqtt_ingest_broker_retained_messages',
      help: 'Retained messages the embedded broker keeps (at most MQTT_MAX_RETAINED_MESSAGES).',
      registers,
    });
    this.retainedBytes = new Gauge({
      name: 'mqtt_ingest_broker_retained_bytes',
      help: 'Topic and payload bytes of the retained messages the embedded broker keeps (at most MQTT_MAX_RETAINED_BYTES).',
      registers,
    });
    this.retainedRefused = new Counter({
      name: 'mqtt_ingest_broker_retained_refused_total',
      help:
        'Retained publishes the embedded broker did not keep as retained, per limit (max_messages, max_bytes); ' +
        'each was still stored and delivered.',
      labelNames: ['reason'] as const,
      registers,
    });
    for (const reason of RETAINED_REFUSAL_REASONS) this.retainedRefused.inc({ reason }, 0);
    this.queuedDropped = new Counter({
      name: 'mqtt_ingest_broker_queued_dropped_total',
      help:
        'Messages the embedded broker did not queue for a disconnected persistent session because its queue held ' +
        'MQTT_MAX_QUEUED_MESSAGES; each was still stored in the spool.',
      registers,
    });
    const state = (pick: 'sessions' | 'queuedMessages' | 'bytes') =>
      function (this: Gauge) {
        const now = partial.stateNow();
        if (now) this.set(now[pick]);
      };
    new Gauge({
      name: 'mqtt_ingest_broker_sessions',
      help: 'Persistent sessions the embedded broker keeps in DATA_DIR/broker/state.db (subscriptions of clients without clean session).',
      registers,
      collect: state('sessions'),
    });
    new Gauge({
      name: 'mqtt_ingest_broker_queued_messages',
      help: 'QoS 1 and 2 messages the embedded broker keeps queued or in flight for subscribers (at most MQTT_MAX_QUEUED_MESSAGES each).',
      registers,
      collect: state('queuedMessages'),
    });
    new Gauge({
      name: 'mqtt_ingest_broker_state_bytes',
      help: "Bytes of the embedded broker's state file DATA_DIR/broker/state.db (sessions, queued and retained messages, wills).",
      registers,
      collect: state('bytes'),
    });
  }

  refused(reason: RefusalReason, n = 1): void {
    this.connectionsRefused.inc({ reason }, n);
  }
}

const perRegistry = new WeakMap<Metrics, BrokerMetrics>();

/** The broker metrics of `metrics`' registry, created on first use (a registry takes each name once). */
export function brokerMetrics(metrics: Metrics): BrokerMetrics {
  let m = perRegistry.get(metrics);
  if (!m) perRegistry.set(metrics, (m = new BrokerMetrics(metrics)));
  return m;
}
