/**
 * What the embedded broker does differently for an MQTT 5 publisher (Aedes 2). Aedes answers an error from the
 * authorizePublish hook of an MQTT 5 client with PUBACK/PUBREC 0x87 (Not authorized), the error's message as
 * Reason String, and keeps the connection (lib/handlers/publish.js); an MQTT 3.1.1 client's error closes the
 * connection unanswered. The hook cannot choose another reason code.
 */
import type { Client, PublishPacket } from 'aedes';
import type { MessageProperties } from '../../core/message.js';

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
