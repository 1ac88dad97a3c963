import type { IPublishPacket } from 'mqtt-packet';
import type { MessageProperties } from '../../core/message.js';

/** The words of an MQTT 3.1.1 CONNACK's refusal (connection.ts). */
export const CONNACK_V4: Record<number, string> = {
  1: 'unacceptable protocol version',
  2: 'client identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized',
};

/**
 * What the spool keeps of an MQTT 5 PUBLISH's properties (mqtt-packet gives a repeated user property name
 * the array of its values); undefined when it had neither user properties nor a content type.
 */
export function propertiesOf(p: NonNullable<IPublishPacket['properties']>): MessageProperties | undefined {
  if (p.userProperties === undefined && p.contentType === undefined) return undefined;
  const out: MessageProperties = {};
  if (p.userProperties !== undefined) out.userProperties = p.userProperties;
  if (p.contentType !== undefined) out.contentType = p.contentType;
  return out;
}
