/**
 * One write's messages on their way to Pub/Sub, request by request (see Publication below). Kept apart
 * from the sink so that its grouping, splitting and ordering rules can be tested without a server.
 */

/**
 * At most this much in one Publish RPC: Pub/Sub takes 1,000 messages and 10 MB per request; the client
 * library's own batcher stops at 9 MiB of data and attributes (publisher BATCH_LIMITS) to leave room for
 * the request's framing, and so do we.
 */
export const MAX_RPC_MESSAGES = 1000;
export const MAX_RPC_BYTES = 9 * 1024 * 1024;

export type PublishRequestMessage = { data: Buffer; attributes: Record<string, string>; orderingKey?: string };

/** Marks a message not sent because an earlier one of its write failed (ordering keys only). */
export const HELD_BACK = Symbol('held back');

/** What a Publication needs of the sink (a small interface, so its splitting can be tested on its own). */
export interface Publisher {
  readonly isOrdered: boolean;
  /** One Publish RPC to `topic` (undefined: the sink's own); undefined when Pub/Sub took it, else its error. */
  publishRequest(messages: PublishRequestMessage[], topic?: string): Promise<unknown>;
  isRefusal(err: unknown): boolean;
}

/**
 * One write's messages on their way. A Publish RPC names one topic, so the messages are grouped by topic
 * (spool order kept within each), each group split into requests at Pub/Sub's limits; the requests go all at
 * once, or, with ordering keys, one after another, topic by topic in the order the batch first names them.
 * A request Pub/Sub refuses (INVALID_ARGUMENT: it accepts or refuses a request whole) is split in halves until
 * the refused messages stand alone (ARCHITECTURE §5: a failed item in a batch is retried alone). With
 * ordering keys, the first failure other than a refusal stops its topic: the rest of that topic's messages
 * are held back (retryable), so nothing overtakes an unsent message; a refused message is dead-lettered and
 * its successors still go. Ordering keys are scoped to a topic, so the other topics go on: a topic that is
 * missing or refused holds up only its own messages.
 *
 * `run` answers per message: undefined (delivered), HELD_BACK, or the error of the request it failed in.
 */
export class Publication {
  private readonly results: unknown[];

  /** `topics[j]` is message j's topic (`projects/P/topics/T`); without it every message goes to the sink's own. */
  constructor(
    private readonly sink: Publisher,
    private readonly messages: PublishRequestMessage[],
    private readonly sizes: number[],
    private readonly topics?: readonly string[],
  ) {
    this.results = new Array(messages.length).fill(undefined);
  }

  async run(): Promise<unknown[]> {
    const byTopic = new Map<string | undefined, number[]>();
    for (let j = 0; j < this.messages.length; j++) {
      const topic = this.topics?.[j];
      const group = byTopic.get(topic);
      if (group) group.push(j);
      else byTopic.set(topic, [j]);
    }
    const sends = [...byTopic].map(([topic, group]) => ({ topic, requests: this.split(group) }));
    if (this.sink.isOrdered) {
      for (const { topic, requests } of sends) await this.sendAll(topic, requests);
    } else {
      await Promise.all(sends.map(({ topic, requests }) => this.sendAll(topic, requests)));
    }
    return this.results;
  }

  /** One topic's messages (in order) as requests within MAX_RPC_MESSAGES and MAX_RPC_BYTES. */
  private split(group: number[]): number[][] {
    const requests: number[][] = [];
    for (let start = 0; start < group.length; ) {
      let end = start + 1;
      let bytes = this.sizes[group[start]!]!;
      while (end < group.length && end - start < MAX_RPC_MESSAGES && bytes + this.sizes[group[end]!]! <= MAX_RPC_BYTES) {
        bytes += this.sizes[group[end++]!]!;
      }
      requests.push(group.slice(start, end));
      start = end;
    }
    return requests;
  }

  /** Sends one topic's requests in order (ordering keys) or all at once; false when a failure stopped an ordered topic. */
  private async sendAll(topic: string | undefined, requests: number[][]): Promise<boolean> {
    if (!this.sink.isOrdered) {
      await Promise.all(requests.map((r) => this.send(topic, r)));
      return true;
    }
    for (let r = 0; r < requests.length; r++) {
      if (await this.send(topic, requests[r]!)) continue;
      for (const later of requests.slice(r + 1)) for (const j of later) this.results[j] = HELD_BACK;
      return false;
    }
    return true;
  }

  private async send(topic: string | undefined, request: number[]): Promise<boolean> {
    const error = await this.sink.publishRequest(request.map((j) => this.messages[j]!), topic);
    if (error === undefined) return true;
    if (this.sink.isRefusal(error)) {
      if (request.length === 1) {
        this.results[request[0]!] = error;
        return true;
      }
      const half = Math.ceil(request.length / 2);
      return this.sendAll(topic, [request.slice(0, half), request.slice(half)]);
    }
    for (const j of request) this.results[j] = error;
    return false;
  }
}
