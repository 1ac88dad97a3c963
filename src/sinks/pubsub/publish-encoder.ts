/**
 * The Publish RPC's request (google.pubsub.v1.PublishRequest) encoded by hand, byte for byte as the library's
 * protobufjs encoder writes it.
 *
 * Why by hand: on the delivery path the library's serialiser (@grpc/proto-loader: `fromObject`, then protobufjs
 * `encode` and `finish`) was a fifth of the node's CPU while it drained a backlog into Pub/Sub
 * (docs/performance.md, "Delivery: the request encoded by hand"). It copies every message into a new object,
 * builds a linked list of write operations per field, and then copies each string and payload once more. The
 * request has four kinds of field that we ever set (a topic, and per message its data, attributes and ordering
 * key), so two passes over the messages do the same: one sums the sizes, one writes each byte once into a single
 * buffer. src/sinks/pubsub/publish-encoder.test.ts checks the result against the library's own encoder on
 * random messages. Everything else of the RPC (channel, credentials, deadline, errors) stays the library's.
 *
 * The wire format (protobuf encoding, field numbers from google/pubsub/v1/pubsub.proto):
 *   PublishRequest { string topic = 1; repeated PubsubMessage messages = 2; }
 *   PubsubMessage { bytes data = 1; map<string, string> attributes = 2; ...; string ordering_key = 5; }
 *   a map entry is a message { string key = 1; string value = 2; }
 * A length-delimited field is its tag byte ((number << 3) | 2), the length as a varint, then the bytes.
 */
import type { PublishRequestMessage } from './publication.js';

const TOPIC = 0x0a; // field 1, length-delimited
const MESSAGES = 0x12; // field 2
const DATA = 0x0a; // PubsubMessage field 1
const ATTRIBUTE = 0x12; // PubsubMessage field 2 (a map entry)
const KEY = 0x0a; // map entry field 1
const VALUE = 0x12; // map entry field 2
const ORDERING_KEY = 0x2a; // PubsubMessage field 5

/** Bytes of `n` as a varint. */
function varintBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[at++] = n;
  return at;
}

/**
 * UTF-8 bytes of a string. Short strings (the attributes: ids, topics, a timestamp) are measured in JavaScript:
 * a call into Buffer.byteLength costs more than the loop for a string of a few dozen characters.
 */
function utf8Length(s: string): number {
  if (s.length > 64) return Buffer.byteLength(s);
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c < 0xdc00 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair: two characters, four bytes
      i++;
    } else n += 2; // three bytes (a lone surrogate too: Buffer writes U+FFFD for it)
  }
  return n;
}

/** Writes `s` (of `len` UTF-8 bytes) at `at`; an ASCII string of a few dozen characters byte by byte, for the same reason. */
function writeString(buf: Buffer, at: number, s: string, len: number): number {
  if (len === s.length && len <= 64) {
    for (let i = 0; i < len; i++) buf[at + i] = s.charCodeAt(i);
    return at + len;
  }
  return at + buf.write(s, at, len, 'utf8');
}

/** A length-delimited field of `len` bytes, its tag and length included. */
function field(len: number): number {
  return 1 + varintBytes(len) + len;
}

/**
 * Sizes found by the first pass, in the order the second pass needs them: per message its own length, then per
 * attribute the key's, the value's and the entry's, then the ordering key's. Reused from call to call (one
 * request is encoded at a time: the function does not yield).
 */
let sizes = new Int32Array(4096);

function keep(at: number, n: number): void {
  if (at >= sizes.length) {
    const more = new Int32Array(sizes.length * 2);
    more.set(sizes);
    sizes = more;
  }
  sizes[at] = n;
}

/** The request's protobuf bytes: what protobufjs writes for `{ topic, messages }`, field for field in the same order. */
export function encodePublishRequest(topic: string, messages: readonly PublishRequestMessage[]): Buffer {
  // Pass 1: every length, as the varint prefixes need them before the bytes they count.
  const topicLen = utf8Length(topic);
  let total = field(topicLen);
  let s = 0;
  for (const m of messages) {
    const own = s++;
    let len = field(m.data.length);
    const attributes = m.attributes;
    for (const k in attributes) {
      const kl = utf8Length(k);
      const vl = utf8Length(attributes[k]!);
      const entry = field(kl) + field(vl);
      keep(s++, kl);
      keep(s++, vl);
      keep(s++, entry);
      len += field(entry);
    }
    if (m.orderingKey !== undefined) {
      const ol = utf8Length(m.orderingKey);
      keep(s++, ol);
      len += field(ol);
    }
    keep(own, len);
    total += field(len);
  }

  // Pass 2: each byte written once.
  const buf = Buffer.allocUnsafe(total);
  let at = 0;
  buf[at++] = TOPIC;
  at = writeVarint(buf, at, topicLen);
  at = writeString(buf, at, topic, topicLen);
  s = 0;
  for (const m of messages) {
    buf[at++] = MESSAGES;
    at = writeVarint(buf, at, sizes[s++]!);
    buf[at++] = DATA;
    at = writeVarint(buf, at, m.data.length);
    buf.set(m.data, at);
    at += m.data.length;
    const attributes = m.attributes;
    for (const k in attributes) {
      const kl = sizes[s++]!;
      const vl = sizes[s++]!;
      buf[at++] = ATTRIBUTE;
      at = writeVarint(buf, at, sizes[s++]!);
      buf[at++] = KEY;
      at = writeVarint(buf, at, kl);
      at = writeString(buf, at, k, kl);
      buf[at++] = VALUE;
      at = writeVarint(buf, at, vl);
      at = writeString(buf, at, attributes[k]!, vl);
    }
    if (m.orderingKey !== undefined) {
      const ol = sizes[s++]!;
      buf[at++] = ORDERING_KEY;
      at = writeVarint(buf, at, ol);
      at = writeString(buf, at, m.orderingKey, ol);
    }
  }
  if (at !== total) throw new Error(`PublishRequest encoding wrote ${at} of ${total} bytes`);
  return buf;
}
