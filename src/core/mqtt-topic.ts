/**
 * MQTT topic names and filters, checked in one place: the configuration (MQTT_TOPICS), the ACL file, the embedded
 * broker's packet guard and the routes all ask these.
 */
import { isUtf8 } from 'node:buffer';

/** Why the bytes of an MQTT string are refused (MQTT 3.1.1 §1.5.3, MQTT 5 §1.5.4), or undefined when they are valid. */
export function mqttStringProblem(bytes: Buffer): string | undefined {
  // U+0000 is encoded as a zero byte only (an overlong C0 80 is not valid UTF-8 either).
  if (bytes.includes(0)) return 'contains U+0000 (MQTT-1.5.3-2)';
  // isUtf8 refuses overlong forms, surrogate code points (MQTT-1.5.3-1 names them) and truncated sequences.
  if (bytes.length > 0 && !isUtf8(bytes)) return 'is not valid UTF-8 (MQTT-1.5.3-1)';
  return undefined;
}

/**
 * Why an MQTT topic filter is invalid, or undefined when it is valid. Empty levels (`a//b`) are valid.
 * MQTT 5.0 §4.7 (wildcards), §4.8.2 (shared subscriptions), §1.5.4 (UTF-8 strings).
 */
export function topicFilterProblem(filter: string): string | undefined {
  if (filter === '') return 'is empty'; // MQTT-4.7.3-1: a filter is at least one character long
  if (filter.includes('\u0000')) return 'contains a NUL character'; // MQTT-1.5.4-2
  if (Buffer.byteLength(filter, 'utf8') > 65535) return 'is longer than 65535 bytes'; // MQTT-1.5.4: length prefix
  let rest = filter;
  if (filter.startsWith('$share/')) {
    const slash = filter.indexOf('/', '$share/'.length);
    const group = filter.slice('$share/'.length, slash === -1 ? undefined : slash);
    // MQTT-4.8.2-1, -2: a share name is at least one character, without "/", "+" or "#", and a filter follows it
    if (group === '' || /[+#]/.test(group)) return 'has an invalid share name: it must be non-empty, without "+" or "#"';
    rest = slash === -1 ? '' : filter.slice(slash + 1);
    if (rest === '') return 'needs a topic filter after $share/<group>/';
  }
  const levels = rest.split('/');
  for (const [i, level] of levels.entries()) {
    // MQTT-4.7.1-1: "#" stands alone as the last level; MQTT-4.7.1-2: "+" occupies a whole level
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return 'uses "#" other than as the whole last level';
    if (level.includes('+') && level !== '+') return 'uses "+" other than as a whole level';
  }
  return undefined;
}

/**
 * Why an MQTT topic name (what a PUBLISH carries) is invalid, or undefined when it is valid: at least one character,
 * no wildcard, no U+0000, at most 65535 bytes (MQTT 5.0 §4.7.3, MQTT-3.3.2-2, §1.5.4).
 */
export function topicNameProblem(topic: string): string | undefined {
  if (topic === '') return 'is empty'; // MQTT-4.7.3-1
  if (topic.includes('\u0000')) return 'contains a NUL character'; // MQTT-1.5.4-2
  if (/[+#]/.test(topic)) return 'contains a wildcard ("+" or "#")'; // MQTT-3.3.2-2
  if (Buffer.byteLength(topic, 'utf8') > 65535) return 'is longer than 65535 bytes';
  return undefined;
}
