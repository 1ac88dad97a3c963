import { createRequire } from 'node:module';

/** A subscription as Aedes gives it (MQTT 5: retain handling, retain as published, no local, subscription identifier). */
export interface Subscription {
  topic: string;
  qos: number;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
  subscriptionIdentifier?: number;
}

/** What is kept of a subscription per client and topic, as the reference store keeps it. */
export interface SubscriptionOptions {
  qos: number;
  rh: number | undefined;
  rap: boolean | undefined;
  nl: boolean | undefined;
  subscriptionIdentifier?: number;
}

/** A subscription matched by topic: aedes-persistence's shape (no subscription identifier). */
export interface TopicSubscription {
  clientId: string;
  topic: string;
  qos: number;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
}

interface QlobberSub {
  add(topic: string, sub: TopicSubscription): void;
  remove(topic: string, sub: { clientId: string; topic: string }): void;
  match(topic: string): TopicSubscription[];
  subscriptionsCount: number;
}

const require = createRequire(import.meta.url);
const QlobberSubClass = require('qlobber/aedes/qlobber-sub') as new (options: object) => QlobberSub;

/** MQTT's topic syntax for qlobber (retained.ts uses the same). */
export const QLOBBER_OPTIONS = { wildcard_one: '+', wildcard_some: '#', separator: '/' };

/** What is stored of `sub`. */
export function optionsOf(sub: Subscription): SubscriptionOptions {
  const options: SubscriptionOptions = { qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl };
  // MQTT 5 Subscription Identifier: only when present, so that pre-v5 subscriptions keep their exact shape.
  if (sub.subscriptionIdentifier !== undefined) options.subscriptionIdentifier = sub.subscriptionIdentifier;
  return options;
}

/**
 * Every stored subscription in memory: per client, its topics in the order first subscribed, and a QlobberSub trie
 * of those with QoS > 0 (Aedes enqueues offline messages for these only), so matching a topic never reads the file.
 * The logic is the reference store's (aedes-persistence asyncPersistence.js), step by step: the same trie, counts
 * and order. The table is written first and this updated after its commit (broker-store.ts), so the two agree.
 */
export class SubscriptionIndex {
  private readonly clients = new Map<string, Map<string, SubscriptionOptions>>();
  private readonly trie = new QlobberSubClass(QLOBBER_OPTIONS);

  /** Subscribes `clientId` to `subs` in order (a topic given twice: the last wins). */
  add(clientId: string, subs: Array<{ topic: string; options: SubscriptionOptions }>): void {
    let stored = this.clients.get(clientId);
    if (stored === undefined) {
      stored = new Map();
      this.clients.set(clientId, stored);
    }
    for (const { topic, options } of subs) {
      const previous = stored.get(topic);
      if (options.qos > 0) {
        this.trie.add(topic, { clientId, topic, qos: options.qos, rh: options.rh, rap: options.rap, nl: options.nl });
      } else if (previous !== undefined && previous.qos > 0) {
        this.trie.remove(topic, { clientId, topic });
      }
      stored.set(topic, options);
    }
  }

  remove(clientId: string, topics: string[]): void {
    const stored = this.clients.get(clientId);
    if (stored === undefined) return;
    for (const topic of topics) {
      const previous = stored.get(topic);
      if (previous === undefined) continue;
      if (previous.qos > 0) this.trie.remove(topic, { clientId, topic });
      stored.delete(topic);
    }
    if (stored.size === 0) this.clients.delete(clientId);
  }

  clean(clientId: string): void {
    const stored = this.clients.get(clientId);
    if (stored === undefined) return;
    for (const [topic, options] of stored) {
      if (options.qos > 0) this.trie.remove(topic, { clientId, topic });
    }
    this.clients.delete(clientId);
  }

  byClient(clientId: string): Array<Subscription & SubscriptionOptions> {
    const stored = this.clients.get(clientId);
    return stored === undefined ? [] : [...stored].map(([topic, options]) => ({ topic, ...options }));
  }

  byTopic(topic: string): TopicSubscription[] {
    return this.trie.match(topic);
  }

  /** Clients subscribed to exactly `filter`, at any QoS. */
  clientsWith(filter: string): string[] {
    return [...this.clients].filter(([, stored]) => stored.has(filter)).map(([clientId]) => clientId);
  }

  /** Aedes's countOffline: subscriptions in the trie (QoS > 0), clients with any subscription. */
  counts(): { subsCount: number; clientsCount: number } {
    return { subsCount: this.trie.subscriptionsCount, clientsCount: this.clients.size };
  }
}
