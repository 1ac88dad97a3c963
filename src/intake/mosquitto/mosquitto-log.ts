import type { RefusalReason } from '../broker-metrics.js';

/**
 * Reads refused connections out of Mosquitto 2.0.11's log (log_type error/warning/notice/information,
 * connection_messages on, log_timestamp off). Mosquitto has no counters for these, and its log is the only place
 * it tells them. The lines, as the real broker writes them (mosquitto-log.test.ts keeps them):
 *
 *   Client <unknown> disconnected, not authorised.                  bad password, unknown user, anonymous
 *   Invalid protocol "MQXX" in CONNECT from 127.0.0.1.              then: ... disconnected due to protocol error.
 *   Client <unknown> disconnected due to protocol error.            bytes that are not MQTT
 *   Client x1 disconnected due to oversize packet.                  over max_packet_size
 *   Client <unknown> has exceeded timeout, disconnecting.           no CONNECT within 1.5 × 60 s
 *   Client connection from 127.0.0.1 denied: max_connections exceeded.
 *   OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not return a certificate
 *   Client <unknown> disconnected: Protocol error.                  (after an OpenSSL line) a failed handshake
 *   Client connection from 127.0.0.1 failed: error:…                a handshake the client gave up
 *
 * An "OpenSSL Error" line alone is no refusal: Mosquitto also writes one when a connected TLS client closes its
 * socket without a TLS close_notify. "Denied PUBLISH" (an ACL denial) is logged at debug level only, which would
 * log every message, so ACL denials are not counted in mosquitto mode.
 */
export class MosquittoLogClassifier {
  private previous = '';

  /** The refusal a line reports, or undefined. Feed every line in order: some refusals take two lines. */
  classify(line: string): RefusalReason | undefined {
    const previous = this.previous;
    this.previous = line;
    if (/^Client .* disconnected, not authorised\.$/.test(line)) return 'not_authorized';
    // Mosquitto 2.0's words for a CONNECT asking for MQTT 5 enhanced authentication (answered 0x8C); read as such only
    // while the rendered configuration sets neither max_qos nor retain_available, which would give the same words.
    if (line === 'Client <unknown> disconnected due to QoS too high or retain not supported.') return 'not_authorized';
    if (/^Invalid protocol( version)? .* in CONNECT from /.test(line)) return 'bad_protocol';
    if (/^Client .* disconnected due to protocol error\.$/.test(line)) {
      // Already counted as bad_protocol by the line before.
      return /^Invalid protocol/.test(previous) ? undefined : 'malformed';
    }
    if (/^Client .* disconnected due to oversize packet\.$/.test(line)) return 'packet_too_large';
    if (line === 'Client <unknown> has exceeded timeout, disconnecting.') return 'connect_timeout';
    if (/^Client connection from .* denied: max_connections exceeded\.$/.test(line)) return 'max_connections';
    if (/^Client <unknown> disconnected: /.test(line) && previous.startsWith('OpenSSL Error')) return 'tls';
    if (/^Client connection from .* failed: /.test(line)) return 'tls';
    return undefined;
  }
}

/**
 * The level a relayed Mosquitto line is logged at: warn for errors and warnings, debug for the routine
 * "Saving in-memory database to …" written at every autosave (every few seconds), info otherwise.
 */
export function relayLevel(line: string): 'warn' | 'info' | 'debug' {
  if (/error|warning/i.test(line)) return 'warn';
  if (/^Saving in-memory database to /.test(line)) return 'debug';
  return 'info';
}
