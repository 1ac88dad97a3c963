/** A message as the source hands it to the spool, before it has an identity. */
export interface InboundMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** Milliseconds since the epoch, taken when the message was read from the broker. */
  receivedAt: number;
  /**
   * MQTT packet id and DUP flag of the PUBLISH as the subscriber received it (source modes only).
   * Used to recognise a broker redelivery of a message already stored (ARCHITECTURE §2.3).
   */
  packetId?: number;
  dup?: boolean;
  /** MQTT 5 user properties and content type of the PUBLISH; absent when it had none (and for MQTT 3.1.1). */
  properties?: MessageProperties;
}

/**
 * What the node keeps of an MQTT 5 PUBLISH's properties. A user property name may occur more than once
 * (MQTT 5 §3.3.2.3.7): its values are then an array, in the order they came.
 */
export interface MessageProperties {
  userProperties?: Record<string, string | string[]>;
  contentType?: string;
}

/** A message committed to the spool. `seq` orders the spool; `messageId` is the stable identity. */
export interface SpooledMessage {
  seq: number;
  /** ULID: time-sortable, assigned at commit; Pub/Sub attribute `message_id`, BigQuery insertId. */
  messageId: string;
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  receivedAt: number;
  /** As the PUBLISH carried them (InboundMessage.properties); absent when it had none. */
  properties?: MessageProperties;
}

/** The sink names of the contract: metric labels and CLI `--sink` values. */
export const SINK_NAMES = ['pubsub', 'bigquery', 'file'] as const;
export type SinkName = (typeof SINK_NAMES)[number];

/** RFC 3339, UTC, milliseconds: the contract's `received_at`. */
export function rfc3339(ms: number): string {
  // Messages read in one burst share their millisecond, and sinks format every one of them: remembering
  // the last answer saves a Date and a string per message when draining a backlog.
  if (ms !== lastRfc3339.ms) {
    lastRfc3339.text = new Date(ms).toISOString();
    lastRfc3339.ms = ms;
  }
  return lastRfc3339.text;
}
const lastRfc3339 = { ms: Number.NaN, text: '' };

/** The payload as text when it is valid UTF-8, else base64, with the encoding used. */
export function encodePayload(payload: Buffer): { payload: string; payload_encoding: 'utf8' | 'base64' } {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  try {
    return { payload: decoder.decode(payload), payload_encoding: 'utf8' };
  } catch {
    return { payload: payload.toString('base64'), payload_encoding: 'base64' };
  }
}
