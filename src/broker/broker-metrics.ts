import { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../http/metrics.js';

/**
 * Why the broker refused or dropped a connection; a fixed vocabulary (metric labels never carry client input):
 * - `not_authorized`: bad or unknown user name or password, anonymous when not allowed, a reserved client id
 * - `bad_protocol`: a CONNECT with another protocol name or an unsupported version
 * - `malformed`: bytes that are not MQTT, or a first packet other than CONNECT
 * - `packet_too_large`: a packet above MQTT_MAX_PACKET_BYTES
 * - `connect_timeout`: a connection that sent no CONNECT in time
 * - `max_connections`: over MQTT_MAX_CONNECTIONS on that listener
 * - `tls`: a failed TLS handshake (no or untrusted client certificate, not TLS at all)
 */
export const REFUSAL_REASONS = [
  'not_authorized',
  'bad_protocol',
  'malformed',
  'packet_too_large',
  'connect_timeout',
  'max_connections',
  'tls',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

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

  constructor(metrics: Metrics) {
    const registers = [metrics.registry];
    this.connectionsRefused = new Counter({
      name: 'mqtt_ingest_broker_connections_refused_total',
      help: 'Connections the broker refused or closed before or at CONNECT, per reason.',
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
