/**
 * The routes at delivery (ROUTES_FILE, docs/routing.md): between a sink runner's lease and its sink's write. Each
 * leased message is routed once (the decision is kept with the message object while it is retried), and then
 * - goes to the sink with its route's targets (`routed`) when the route uses this sink, or as it is when it
 *   matched no route and the file says `unmatched: raw`;
 * - is done for this sink at once, without a write, when its route does not use the sink or drops it;
 * - is dead-lettered for this sink with the route's reason (field_invalid, decode_failed, no_route).
 * The spool keeps the original message, so after a restart with a changed routes file the backlog follows the
 * new routes.
 *
 * The route metrics count each message once: only the stage of the node's first sink counts, when the spool
 * has recorded what that sink did with it (so an outcome recorded twice after a retry is not counted twice).
 */
import type { SinkName, SpooledMessage } from '../core/message.js';
import { rejected, retryable, type DeliveryOutcome } from '../core/outcome.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { Router } from '../routes/router.js';
import { UNMATCHED_ROUTE } from '../routes/types.js';
import type { DeliveryMessage } from '../sinks/sink.js';
import type { DeadLetterInput } from '../spool/dead-letters.js';


/** What routing decided for one message and one sink. */
type Decision =
  | { kind: 'send'; route: string }
  | { kind: 'skip'; route: string; dropped: boolean }
  | { kind: 'dead'; route: string; outcome: DeliveryOutcome };

/**
 * A leased message with what routing decided for it. Kept on the message object itself (the runner's own, held
 * while it is retried) rather than in a WeakMap: an ephemeron table per runner cost more in garbage collection
 * than the routing did.
 */
type Decided = DeliveryMessage & { routeDecision?: Decision };

/** A batch split by routing: what the sink writes (with the indexes in the batch), and what is done without it. */
export interface RoutedBatch {
  send: DeliveryMessage[];
  sendIndex: number[];
  /** Index in the batch → dead letter for this sink (the route's reason). */
  dead: Map<number, DeliveryOutcome>;
  /** Indexes done for this sink without a write. */
  skipped: number[];
  /** Indexes the stage holds until they can be routed (Sparkplug data waiting for a birth): neither done nor retried. */
  parked: number[];
  /**
   * Index in the batch → why routing itself failed (the Sparkplug births file could not be read or written): retried,
   * with the sink's backoff, and shown in its status.
   */
  failed: Map<number, DeliveryOutcome>;
}

/** How often a held message is routed again while it waits (it resolves as soon as its birth has been routed). */
const PARKED_RETRY_MS = 1000;
/**
 * Most messages held at once. Beyond it a message is not held (its aliases resolve with what there is), so that a
 * flood of data from an edge node without a birth cannot fill memory.
 */
export const MAX_PARKED = 10_000;

export interface RouteStageOptions {
  router: Router;
  sink: SinkName;
  /** This stage counts the route metrics (the node's first sink). */
  counts: boolean;
  metrics: Metrics;
  logger: Logger;
  /** Monotonic milliseconds (core/clock.ts), for held messages. */
  now: () => number;
}

export class RouteStage {
  /** Messages waiting to be routed again, with when (monotonic), oldest first. */
  private parked: { msg: SpooledMessage; at: number }[] = [];

  constructor(private readonly o: RouteStageOptions) {}

  /** How many messages the stage holds (readiness, tests). */
  get held(): number {
    return this.parked.length;
  }

  /** Held messages due to be routed again: the runner puts them at the head of its next batch. */
  takeDue(): SpooledMessage[] {
    if (this.parked.length === 0) return [];
    const now = this.o.now();
    const due = this.parked.filter((p) => p.at <= now);
    if (due.length === 0) return [];
    this.parked = this.parked.filter((p) => p.at > now);
    return due.map((p) => p.msg);
  }

  split(batch: readonly SpooledMessage[]): RoutedBatch {
    const out: RoutedBatch = { send: [], sendIndex: [], dead: new Map(), skipped: [], parked: [], failed: new Map() };
    for (let i = 0; i < batch.length; i++) {
      const msg = batch[i]! as Decided;
      let d: Decision | undefined;
      try {
        d = this.decide(msg);
      } catch (err) {
        out.failed.set(i, retryable('routing_failed', `routing message ${msg.messageId}: ${(err as Error).message}`, 'degraded'));
        continue;
      }
      if (d === undefined) {
        out.parked.push(i);
      } else if (d.kind === 'send') {
        out.send.push(msg);
        out.sendIndex.push(i);
      } else if (d.kind === 'skip') out.skipped.push(i);
      else out.dead.set(i, d.outcome);
    }
    return out;
  }

  /** The message's decision, or undefined when the stage holds it to route it again later. */
  private decide(msg: Decided): Decision | undefined {
    const known = msg.routeDecision;
    if (known) return known;
    const outcome = this.o.router.route(msg, { counting: this.o.counts, mayWait: this.parked.length < MAX_PARKED });
    let d: Decision;
    switch (outcome.kind) {
      case 'wait':
        this.parked.push({ msg, at: Math.min(outcome.untilMs, this.o.now() + PARKED_RETRY_MS) });
        return undefined;
      case 'raw':
        d = { kind: 'send', route: UNMATCHED_ROUTE };
        break;
      case 'dropped':
        d = { kind: 'skip', route: outcome.route?.name ?? UNMATCHED_ROUTE, dropped: true };
        break;
      case 'dead_letter': {
        const route = outcome.route?.name ?? UNMATCHED_ROUTE;
        const detail = outcome.route ? `route ${route}: ${outcome.detail}` : outcome.detail;
        d = { kind: 'dead', route, outcome: rejected(outcome.reason, detail) };
        break;
      }
      case 'routed':
        if (this.o.sink in outcome.targets) {
          msg.routed = outcome.targets;
          d = { kind: 'send', route: outcome.route.name };
        } else d = { kind: 'skip', route: outcome.route.name, dropped: false };
        break;
    }
    msg.routeDecision = d;
    return d;
  }

  /** The spool has recorded these outcomes for this sink: count them (the counting stage only), a batch at a time. */
  recorded(done: readonly SpooledMessage[], dead: readonly DeadLetterInput[]): void {
    if (!this.o.counts) return;
    const counts = new Map<string, { route: string; outcome: string; n: number }>();
    const count = (route: string, outcome: string) => {
      const key = `${route}\n${outcome}`;
      const c = counts.get(key);
      if (c) c.n += 1;
      else counts.set(key, { route, outcome, n: 1 });
    };
    for (const msg of done as readonly Decided[]) {
      const d = msg.routeDecision;
      if (!d) continue;
      if (d.kind === 'skip' && d.dropped) {
        count(d.route, 'dropped');
        this.o.logger.debug({ route: d.route, message_id: msg.messageId, topic: msg.topic }, 'message dropped by its route');
      } else count(d.route, 'delivered');
    }
    for (const { message } of dead) {
      const d = (message as Decided).routeDecision;
      if (d) count(d.route, 'dead_lettered');
    }
    const { routeMessages, messagesDropped } = this.o.metrics;
    for (const { route, outcome, n } of counts.values()) {
      routeMessages.inc({ route, outcome }, n);
      if (outcome === 'dropped') messagesDropped.inc({ route }, n);
    }
  }
}
