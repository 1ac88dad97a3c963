/**
 * Rebirth requests (SPARKPLUG_REBIRTH=on): data the births cannot resolve makes the node, as the primary host,
 * command its edge node to send its births again (NCMD `Node Control/Rebirth`, Sparkplug 3.0 §6.4.7), and the
 * message waits for them, up to SPARKPLUG_BIRTH_WAIT_SECONDS. What the host keeps for it: per edge node, when it
 * last asked and until when messages wait; per waiting message, its deadline and, once it stopped waiting, what
 * it resolved to, so that every caller gets the same answer.
 */
import protobuf from 'protobufjs/minimal.js';
import { withCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { SPARKPLUG_NAMESPACE, type BirthMetric } from './types.js';

/** An edge node is asked at most this often. */
export const REBIRTH_INTERVAL_MS = 30_000;

export const REBIRTH_METRIC = 'Node Control/Rebirth';

/** `spBv1.0/<group>/NCMD/<edgeNode>`: where a rebirth request is published (QoS 0, not retained). */
export function rebirthTopic(group: string, edgeNode: string): string {
  return `${SPARKPLUG_NAMESPACE}/${group}/NCMD/${edgeNode}`;
}

/**
 * The NCMD payload, a sparkplug_b.proto Payload: `timestamp`, and one metric `Node Control/Rebirth`, Boolean
 * (datatype 11), true, with the same timestamp. Written field by field, as the schema numbers them.
 */
export function rebirthPayload(timestampMs: number): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | 0).uint64(timestampMs); // Payload.timestamp
  w.uint32((2 << 3) | 2).fork(); // Payload.metrics
  w.uint32((1 << 3) | 2).string(REBIRTH_METRIC); // Metric.name
  w.uint32((3 << 3) | 0).uint64(timestampMs); // Metric.timestamp
  w.uint32((4 << 3) | 0).uint32(11); // Metric.datatype: Boolean
  w.uint32((14 << 3) | 0).bool(true); // Metric.boolean_value
  w.ldelim();
  return Buffer.from(w.finish());
}

/** A message held for the births a rebirth request asked for. */
export interface Waiting {
  /** Monotonic ms: then it resolves with what there is. */
  untilMs: number;
  /** What it resolved to, once it no longer waits. */
  settled?: (BirthMetric | undefined)[];
  /** Its unresolved metrics were counted. */
  counted: boolean;
}

interface EdgeRequest {
  requestedAt: number;
  /** Messages of the edge node wait until then; unset once a birth answered. */
  untilMs?: number;
  /** The spool seq of the message that made the request: a birth after it answers it. */
  after: number;
}

export class Rebirths {
  private readonly requests = new Map<string, EdgeRequest>();
  /** By spool seq. */
  readonly waits = new Map<number, Waiting>();

  constructor(
    private readonly o: {
      birthWaitMs: number;
      monotonic: () => number;
      requestRebirth: (group: string, edgeNode: string) => void;
      logger: Logger;
    },
  ) {}

  /**
   * The message at `spoolSeq` needs births its edge node has not sent (`reason`): asks for them, unless it did
   * less than REBIRTH_INTERVAL_MS ago, and returns the deadline the message waits for; undefined when it was
   * asked recently and its wait is over (then the message goes with what there is, rather than wait again).
   */
  need(key: string, group: string, edgeNode: string, spoolSeq: number, messageId: string, reason: 'no_birth' | 'unknown_alias'): number | undefined {
    const now = this.o.monotonic();
    let r = this.requests.get(key);
    let untilMs = r?.untilMs !== undefined && now < r.untilMs ? r.untilMs : undefined;
    if (!r || now - r.requestedAt >= REBIRTH_INTERVAL_MS) {
      // Asked again while messages still wait (the command may have been lost): they keep their deadline.
      const joined = untilMs !== undefined && r !== undefined;
      untilMs ??= now + this.o.birthWaitMs;
      r = { requestedAt: now, untilMs, after: joined ? r!.after : spoolSeq };
      this.requests.set(key, r);
      this.o.requestRebirth(group, edgeNode);
      this.o.logger.info(
        withCode('SPARKPLUG_REBIRTH_REQUESTED', { group, edgeNode, reason, message_id: messageId, waitMs: Math.round(untilMs - now) }),
        `asked ${group}/${edgeNode} for a rebirth (NCMD ${REBIRTH_METRIC}): ${reason === 'no_birth' ? 'data before any birth' : 'aliases no birth names'}`,
      );
    }
    if (untilMs === undefined) return undefined;
    this.waits.set(spoolSeq, { untilMs, counted: false });
    return untilMs;
  }

  /** An NBIRTH of edge node `key` was recorded at `spoolSeq`: a request before it is answered. */
  born(key: string, spoolSeq: number): void {
    const r = this.requests.get(key);
    if (r && spoolSeq > r.after) r.untilMs = undefined;
  }

  /** Forgets the messages no longer in the spool (`oldest`: its oldest seq) and the requests long past. */
  prune(oldest: number): void {
    for (const seq of this.waits.keys()) if (seq < oldest) this.waits.delete(seq);
    const now = this.o.monotonic();
    for (const [key, r] of this.requests) {
      if (now - r.requestedAt >= REBIRTH_INTERVAL_MS && (r.untilMs === undefined || now >= r.untilMs)) this.requests.delete(key);
    }
  }
}
