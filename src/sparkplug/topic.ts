/**
 * Sparkplug 3.0 topics (§4.1): `spBv1.0/<group_id>/<message_type>/<edge_node_id>[/<device_id>]`, the device id
 * present exactly for DBIRTH, DDEATH, DDATA and DCMD; and a host's `spBv1.0/STATE/<host_id>`. Every id is one
 * non-empty topic level (the specification reserves `/`, `+` and `#`, which a published topic cannot hold).
 */
import { SPARKPLUG_NAMESPACE, type MessageType, type SparkplugTopic } from './types.js';

const NODE_TYPES = new Set<string>(['NBIRTH', 'NDEATH', 'NDATA', 'NCMD']);
const DEVICE_TYPES = new Set<string>(['DBIRTH', 'DDEATH', 'DDATA', 'DCMD']);

/** The Sparkplug topic a topic is, or undefined when it is none (another namespace, level count or type). */
export function parseSparkplugTopic(topic: string): SparkplugTopic | undefined {
  const levels = topic.split('/');
  if (levels[0] !== SPARKPLUG_NAMESPACE || levels.some((l) => l === '' || l.includes('+') || l.includes('#'))) return undefined;
  if (levels.length === 3 && levels[1] === 'STATE') return { type: 'STATE', hostId: levels[2]! };
  const [, group, type, edgeNode, device] = levels;
  if (NODE_TYPES.has(type!) && levels.length === 4) return { type: type as NodeOrDevice, group: group!, edgeNode: edgeNode! };
  if (DEVICE_TYPES.has(type!) && levels.length === 5) return { type: type as NodeOrDevice, group: group!, edgeNode: edgeNode!, device: device! };
  return undefined;
}

type NodeOrDevice = Exclude<MessageType, 'STATE'>;

/** The topic a SparkplugTopic is published on (the inverse of parseSparkplugTopic). */
export function sparkplugTopicText(t: SparkplugTopic): string {
  if (t.type === 'STATE') return `${SPARKPLUG_NAMESPACE}/STATE/${t.hostId}`;
  return [SPARKPLUG_NAMESPACE, t.group, t.type, t.edgeNode, ...(t.device === undefined ? [] : [t.device])].join('/');
}
