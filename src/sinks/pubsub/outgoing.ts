/**
 * What one message becomes on the wire (contract §3, docs/pubsub.md): its topic, data, attributes and ordering
 * key, checked against Pub/Sub's limits on exactly what is sent. A routed message (RouteTargets.pubsub) goes to
 * its route's topic with the route's data, and the route's attributes beside the contract's; any other message
 * goes to the sink's own topic with its payload.
 */
import { rfc3339, type SpooledMessage } from '../../core/message.js';
import { rejected, type DeliveryOutcome } from '../../core/outcome.js';
import type { DeliveryMessage } from '../sink.js';
import type { PublishRequestMessage } from './publication.js';
import { addPropertyAttributes, type PropertyDrops } from './property-attributes.js';

/** Pub/Sub's limits (cloud.google.com/pubsub/quotas#resource_limits): 10 MB per message, 1,024 bytes per attribute value. */
export const MAX_MESSAGE_BYTES = 10_000_000;
export const MAX_ATTRIBUTE_VALUE_BYTES = 1024;
/** Pub/Sub's limit on an ordering key (the same page). */
export const MAX_ORDERING_KEY_BYTES = 1024;

/** The names contractAttributes gives every message (routes may not take them for attributes of their own). */
export const CONTRACT_ATTRIBUTE_NAMES: readonly string[] = ['message_id', 'mqtt_topic', 'mqtt_qos', 'mqtt_retain', 'received_at'];

/** The contract's attributes for one message. */
export function contractAttributes(msg: SpooledMessage): Record<string, string> {
  return {
    message_id: msg.messageId,
    mqtt_topic: msg.topic,
    mqtt_qos: String(msg.qos),
    mqtt_retain: msg.retain ? 'true' : 'false',
    received_at: rfc3339(msg.receivedAt),
  };
}

/**
 * A rejection when the message breaks one of Pub/Sub's limits, else undefined. Checked before publishing so
 * one bad message is dead-lettered alone instead of failing the RPC it would share with its neighbours. The
 * emulator checks neither limit (it accepts 1,025-byte attributes, and a request over its 11,000,000-byte
 * gRPC limit hangs until the deadline), so only this check keeps tests honest. The data counted is what is
 * sent: the route's for a routed message, else the payload.
 */
export function checkLimits(msg: DeliveryMessage, attributes: Record<string, string>): DeliveryOutcome | undefined {
  const routed = msg.routed?.pubsub;
  const size = messageSize(routed ? routed.data : msg.payload, attributes, routed ? 'data' : 'payload');
  return typeof size === 'number' ? undefined : size;
}

/** The message's size as the client library counts it (calculateMessageSize: data plus each attribute key and value), or why it cannot be sent. */
function messageSize(data: Buffer, attributes: Record<string, string>, dataName: 'payload' | 'data'): number | DeliveryOutcome {
  let attributeBytes = 0;
  for (const key in attributes) {
    const value = attributes[key]!;
    const valueBytes = Buffer.byteLength(value);
    if (valueBytes > MAX_ATTRIBUTE_VALUE_BYTES) {
      const why = key === 'mqtt_topic' ? ' (an MQTT topic that long cannot be an attribute)' : '';
      return rejected('attribute_too_long', `attribute ${key} is ${valueBytes} bytes; Pub/Sub allows ${MAX_ATTRIBUTE_VALUE_BYTES}${why}`);
    }
    attributeBytes += key.length + valueBytes; // keys are ASCII
  }
  const size = data.length + attributeBytes;
  if (size > MAX_MESSAGE_BYTES) {
    return rejected(
      'too_large',
      `message is ${size} bytes (${dataName} ${data.length} + attributes ${attributeBytes}); Pub/Sub allows ${MAX_MESSAGE_BYTES}`,
    );
  }
  return size;
}

/** One message ready for a Publish request: the topic it goes to, the request's message, and its bytes in the request. */
export interface Outgoing {
  /** `projects/P/topics/T` */
  topic: string;
  message: PublishRequestMessage;
  size: number;
}

export interface OutgoingOptions {
  /** The sink's own topic (PUBSUB_TOPIC), for a message without a route's. */
  topic: string;
  /** PUBSUB_ORDERING_KEY=mqtt_topic: a message without a route's ordering key takes its MQTT topic as one. */
  mqttTopicKey: boolean;
  /** Counts the properties left out (mqtt_ingest_properties_dropped_total). */
  countDrops(drops: PropertyDrops): void;
}

/**
 * The message as it is published, or the rejection when Pub/Sub could never take it. Attributes: the contract's,
 * then the route's (the routes file forbids names that collide with the node's own), then the MQTT 5 properties
 * (property-attributes.ts), which are left out altogether when with them the message would pass 10 MB. Ordering
 * key: the route's; else the MQTT topic with PUBSUB_ORDERING_KEY=mqtt_topic; else none.
 */
export function outgoing(msg: DeliveryMessage, o: OutgoingOptions): Outgoing | DeliveryOutcome {
  const routed = msg.routed?.pubsub;
  const data = routed ? routed.data : msg.payload;
  const dataName = routed ? 'data' : 'payload';
  const base = (): Record<string, string> => {
    const attributes = contractAttributes(msg);
    return routed ? Object.assign(attributes, routed.attributes) : attributes;
  };
  let attributes = base();
  let size = messageSize(data, attributes, dataName);
  if (msg.properties !== undefined && typeof size === 'number') {
    const own = Object.keys(attributes).length;
    const drops = addPropertyAttributes(attributes, msg.properties);
    if (drops) o.countDrops(drops);
    size = messageSize(data, attributes, dataName);
    if (typeof size !== 'number') {
      // The properties made it too large: it goes without them rather than not at all.
      o.countDrops({ message_too_large: Object.keys(attributes).length - own });
      attributes = base();
      size = messageSize(data, attributes, dataName);
    }
  }
  if (typeof size !== 'number') return size;
  const topic = routed ? routed.topic : o.topic;
  const orderingKey = routed?.orderingKey ?? (o.mqttTopicKey ? msg.topic : undefined);
  if (orderingKey === undefined) return { topic, message: { data, attributes }, size };
  return { topic, message: { data, attributes, orderingKey }, size: size + Buffer.byteLength(orderingKey) };
}

export function isOutgoing(o: Outgoing | DeliveryOutcome): o is Outgoing {
  return 'message' in o;
}
