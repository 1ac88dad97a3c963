/**
 * What the embedded broker does differently for an MQTT 5 publisher (Aedes 2). Aedes answers an error from the
 * authorizePublish hook of an MQTT 5 client with PUBACK/PUBREC 0x87 (Not authorized), the error's message as
 * Reason String, and keeps the connection (lib/handlers/publish.js); an MQTT 3.1.1 client's error closes the
 * connection unanswered. The hook cannot choose another reason code.
 */
import type { Client, PublishPacket } from 'aedes';
import mqttPacket from 'mqtt-packet';
import type { MessageProperties } from '../../core/message.js';

/** MQTT 5 reason code 0x97 (Quota exceeded), §3.4.2.1. */
export const QUOTA_EXCEEDED = 0x97;
/** The Reason String of a publish refused while the spool is full. */
export const SPOOL_FULL_REASON = 'the node cannot store messages now (spool full): publish again later';

/** The Reason String of an ACL-denied MQTT 5 publish: the client sees it, so it says nothing of the ACL. */
export const NOT_AUTHORIZED = 'not authorized';

export function isMqtt5(client: Client | null): boolean {
  return client?.version === 5;
}

/**
 * What the spool keeps of an MQTT 5 PUBLISH's properties (mqtt-packet gives a repeated user property name the
 * array of its values), as the subscriber mode keeps them; undefined when it had neither.
 */
export function publishProperties(packet: PublishPacket): MessageProperties | undefined {
  const p = (packet as { properties?: { userProperties?: Record<string, string | string[]>; contentType?: string } }).properties;
  if (p?.userProperties === undefined && p?.contentType === undefined) return undefined;
  const out: MessageProperties = {};
  if (p.userProperties !== undefined) out.userProperties = p.userProperties;
  if (p.contentType !== undefined) out.contentType = p.contentType;
  return out;
}

/**
 * Refuses a publish without any acknowledgement, whatever the protocol: a message that was not committed must
 * be resent, and the 0x87 that Aedes would answer an MQTT 5 client tells it to drop the message. The connection
 * is closed first, so Aedes has nothing to write the 0x87 to (lib/write.js: "connection closed"); the publisher
 * resends on its next connection, as an MQTT 3.1.1 one does.
 */
export function refuseUnacknowledged(client: Client | null, err: Error, callback: (err?: Error | null) => void): void {
  if (!client || client.version !== 5) return callback(err);
  client.close(() => callback(err));
}

/**
 * Answers an MQTT 5 QoS 1 or 2 publish with PUBACK/PUBREC `reasonCode` and tells Aedes to do nothing more with it,
 * then calls the hook back. Aedes's authorizePublish answers any error with 0x87 (lib/handlers/publish.js), so the
 * node writes its own acknowledgement, as Aedes does (mqtt-packet's writeToStream on the connection, protocol 5,
 * the Reason String unless the client set Request Problem Information to 0: Aedes's `_requestProblemInformation`), and sets the packet's
 * `_notAuthorized`, the flag by which Aedes's enqueuePublish skips the PUBACK and the publish: pinned Aedes
 * 2.0.0-beta.1 behaviour, checked by test/embedded-mqtt5.test.ts.
 */
export function answerRefused(client: Client, packet: PublishPacket, reasonCode: number, reason: string, callback: (err?: Error | null) => void): void {
  (packet as { _notAuthorized?: boolean })._notAuthorized = true;
  const c = client as { _requestProblemInformation?: boolean; connecting?: boolean; connected?: boolean; conn?: NodeJS.WritableStream };
  const properties = c._requestProblemInformation === false ? undefined : { reasonString: reason };
  const ack = {
    cmd: packet.qos === 1 ? ('puback' as const) : ('pubrec' as const),
    messageId: (packet as { messageId?: number }).messageId ?? 0,
    reasonCode,
    ...(properties ? { properties } : {}),
  };
  // Aedes's own condition (lib/write.js): `connected` turns true only after the CONNACK's last connect action
  // (emptyQueue, which reads the session's queue from the broker store), so a client that publishes as soon as
  // it has its CONNACK is still `connecting`; testing `connected` alone left that publish unanswered.
  try {
    if (c.conn && (c.connecting || c.connected)) mqttPacket.writeToStream(ack, c.conn, { protocolVersion: 5 });
  } catch {
    // A connection closing under us: the publisher gets nothing and resends on its next connection.
  }
  callback(null);
}
