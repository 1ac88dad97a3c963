import type { SpooledMessage } from '../core/message.js';
import { ROW_OVERHEAD_BYTES } from './schema.js';

/** A `messages` row as SQLite returns it. */
export interface Row {
  seq: number;
  message_id: string;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: number;
  received_at: number;
}

export function rowToMessage(r: Row): SpooledMessage {
  return {
    seq: r.seq,
    messageId: r.message_id,
    topic: r.topic,
    payload: r.payload,
    qos: r.qos as 0 | 1 | 2,
    retain: r.retain === 1,
    receivedAt: r.received_at,
  };
}

/** Bytes a message is charged against SPOOL_MAX_BYTES: payload, topic and a fixed row overhead. */
export function messageBytes(topic: string, payload: Buffer): number {
  return payload.length + Buffer.byteLength(topic) + ROW_OVERHEAD_BYTES;
}
