/**
 * The keys of the node's own broker: listeners, TLS, users and limits (docs/security.md); ignored with an external
 * broker. The section that holds them, with the defaults that follow APP_ENV and the rules across them, is
 * config.ts; the settings both broker modes build their listeners from are policy.ts's.
 */
import { boolean, byteSize, KiB, MiB, text, wholeNumber } from '../../core/settings/fields.js';
import { key } from '../../core/settings/key.js';
import type { EnvironmentConfig } from '../../core/settings/node.js';
import type { Values } from '../../core/settings/section.js';
import type { HttpConfig } from '../../http/config.js';
import type { IntakeConfig } from '../config.js';

export const ownBrokerKeys = {
  MQTT_TLS_PORT: key(wholeNumber(1, 65535), {
    default: '8883',
    description: 'Port of the TLS listener, which is on when `MQTT_TLS_CERT` and `MQTT_TLS_KEY` are set.',
  }),
  MQTT_TLS_CERT: key(text('a file path'), {
    file: true,
    description: "PEM file with the broker's certificate chain, server certificate first.",
  }),
  MQTT_TLS_KEY: key(text('a file path'), {
    file: true,
    description: 'PEM file with the private key of the server certificate (unencrypted).',
  }),
  MQTT_TLS_CA: key(text('a file path'), {
    file: true,
    description: 'PEM bundle of the certificate authorities that sign client certificates (for `MQTT_TLS_REQUIRE_CLIENT_CERT`).',
  }),
  MQTT_TLS_REQUIRE_CLIENT_CERT: key(boolean(), {
    default: 'false',
    description:
      'mTLS: the TLS (and secure WebSocket) listener refuses clients without a certificate signed by `MQTT_TLS_CA`. ' +
      "Without `MQTT_AUTH_FILE` the certificate's Common Name is the client's user name (for the ACL); with it, " +
      'clients need both the certificate and a password.',
  }),
  MQTT_PLAINTEXT: key(boolean(), {
    derivedDefault: '`on` in dev, `off` in pprd and prd',
    description: 'The plaintext MQTT listener on `MQTT_PORT`.',
  }),
  MQTT_WS_PORT: key(wholeNumber(1, 65535), {
    description: 'Port of an MQTT over WebSockets listener (secure WebSockets when `MQTT_TLS_CERT` and `MQTT_TLS_KEY` are set). Unset: off.',
  }),
  MQTT_AUTH_FILE: key(text('a file path'), {
    file: true,
    description:
      'Mosquitto-format password file (`user:$7$…` lines, written by `mqtt-ingest passwd` or `mosquitto_passwd`). ' +
      'Reloaded on SIGHUP.',
  }),
  MQTT_ACL_FILE: key(text('a file path'), {
    file: true,
    description:
      'Mosquitto-format ACL file (`user`, `topic read|write|readwrite|deny`, `pattern` with `%u`/`%c`). Reloaded on SIGHUP.',
  }),
  MQTT_ALLOW_ANONYMOUS: key(boolean(), {
    derivedDefault: '`true` in dev, `false` in pprd and prd',
    description: 'Accept clients that give no user name.',
  }),
  MQTT_ALLOW_INSECURE: key(boolean(), {
    default: 'false',
    description:
      'Let pprd and prd start with the plaintext listener, without TLS or with anonymous access (or, with an external ' +
      'broker, send `MQTT_USERNAME`/`MQTT_PASSWORD` over a plaintext `mqtt://` or `ws://` URL), with a warning at ' +
      'start and in the readiness JSON.',
  }),
  MQTT_MAX_PACKET_BYTES: key(byteSize(KiB, 268_435_455), {
    default: '1MiB',
    description:
      'Largest MQTT packet a client may send; a client sending a larger one is disconnected. Pub/Sub and BigQuery take ' +
      'at most 10 MB per message; MQTT allows 256 MiB.',
  }),
  MQTT_MAX_CONNECTIONS: key(wholeNumber(1, 1_000_000), {
    default: '10000',
    description:
      'Most client connections per listener; more are closed at once. Each takes a file descriptor: keep it under the ' +
      "process's open-file limit.",
  }),
  MQTT_MAX_CONNECT_BYTES: key(byteSize(KiB, 268_435_455), {
    default: '64KiB',
    description:
      'Embedded broker: largest first packet (the CONNECT, sent before any authentication); a client sending a larger ' +
      'one is disconnected. A CONNECT is usually well under 1 KiB; a 3.1.1 one can reach 256 KiB only with a will ' +
      'message, user name and password near their 64 KiB maximum each. `MQTT_MAX_PACKET_BYTES` applies if lower.',
  }),
  MQTT_MAX_PARTIAL_BYTES: key(byteSize(MiB), {
    default: '256MiB',
    description:
      'Embedded broker: most bytes of incomplete packets (received, not yet complete) held for all connections ' +
      'together; a connection whose incomplete packet would go past it is disconnected. Keep it at least ' +
      '`MQTT_MAX_PACKET_BYTES` and well under the memory of the instance (docs/security.md).',
  }),
  MQTT_PARTIAL_PACKET_TIMEOUT_SECONDS: key(wholeNumber(1, 3600), {
    default: '60',
    description:
      'Embedded broker: a connection whose incomplete packet receives no byte for this long is disconnected (with a ' +
      'keep-alive, also one that completes no packet within 1.5 × the keep-alive, MQTT-3.1.2-24).',
  }),
  MQTT_MAX_RETAINED_MESSAGES: key(wholeNumber(0, 100_000_000), {
    default: '50000',
    description:
      'Embedded broker: most retained messages it keeps (Aedes keeps them in the V8 heap, about 0.5 KiB each besides ' +
      'topic and payload). A retained message over the limit is still stored and delivered, but not kept as retained. ' +
      'Mosquitto 2.0.11 has no such limit.',
  }),
  MQTT_MAX_RETAINED_BYTES: key(byteSize(0), {
    default: '32MiB',
    description:
      'Embedded broker: most topic and payload bytes of the retained messages it keeps, as `MQTT_MAX_RETAINED_MESSAGES`.',
  }),
  MQTT_MAX_QUEUED_MESSAGES: key(wholeNumber(1, 100_000_000), {
    default: '1000',
    description:
      'Embedded broker: most QoS 1 and 2 messages queued for one persistent session of another subscriber (kept in ' +
      '`DATA_DIR/broker/state.db`); a message for a full queue is not queued for it, and is counted in ' +
      '`mqtt_ingest_broker_queued_dropped_total` (it is still stored in the spool). Mosquitto\'s `max_queued_messages`.',
  }),
  MQTT_MAX_SESSION_EXPIRY_SECONDS: key(wholeNumber(1, 4294967295), {
    default: '1209600',
    description:
      'Embedded broker: longest a disconnected persistent session is kept (its subscriptions and queued messages): ' +
      'the most an MQTT 5 client\'s Session Expiry Interval gets, and how long an MQTT 3.1.1 session without clean ' +
      'session lasts. Default 14 days, Mosquitto\'s `persistent_client_expiration` in the mosquitto mode.',
  }),
  MOSQUITTO_BIN: key(text('a command name or path'), {
    default: 'mosquitto',
    description: 'The Mosquitto executable, looked up on `PATH` unless it is a path.',
  }),
};

/** The own broker's values. MQTT_PLAINTEXT and MQTT_ALLOW_ANONYMOUS are always set: unset, they follow APP_ENV. */
export type OwnBrokerConfig = Omit<Values<typeof ownBrokerKeys>, 'MQTT_PLAINTEXT' | 'MQTT_ALLOW_ANONYMOUS'> & {
  MQTT_PLAINTEXT: boolean;
  MQTT_ALLOW_ANONYMOUS: boolean;
};

/**
 * What the broker-security policy reads: these keys, the intake's (which broker, where it listens, the
 * subscriber's credentials), APP_ENV, and PORT, which no broker listener may take.
 */
export type BrokerSecurityInput = OwnBrokerConfig & IntakeConfig & EnvironmentConfig & Pick<HttpConfig, 'PORT'>;
