/**
 * One write's messages on their way to Pub/Sub, request by request (see Publication below). Kept apart
 * from the sink so that its splitting and ordering rules can be tested without a server.
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
  publishRequest(messages: PublishRequestMessage[]): Promise<unknown>;
  isRefusal(err: unknown): boolean;
}

/**
 * One write's messages on their way: split into requests at Pub/Sub's limits, sent all at once (or, with
 * ordering keys, one after another), and a request Pub/Sub refuses (INVALID_ARGUMENT: it accepts or
 * refuses a request whole) split in halves until the refused messages stand alone (ARCHITECTURE §5: a
 * failed item in a batch is retried alone). With ordering keys, the first failure other than a refusal
 * stops the write: everything after it is held back (retryable), so nothing overtakes an unsent message;
 * a refused message is dead-lettered and its successors still go.
 *
 * `run` answers per message: undefined (delivered), HELD_BACK, or the error of the request it failed in.
 */
export class Publication {
  private readonly results: unknown[];

  constructor(
    private readonly sink: Publisher,
    private readonly messages: PublishRequestMessage[],
    private readonly sizes: number[],
  ) {
    this.results = new Array(messages.length).fill(undefined);
  }

  async run(): Promise<unknown[]> {
    const requests: number[][] = [];
    for (let start = 0; start < this.messages.length; ) {
      let end = start + 1;
      let bytes = this.sizes[start]!;
      while (end < this.messages.length && end - start < MAX_RPC_MESSAGES && bytes + this.sizes[end]! <= MAX_RPC_BYTES) {
        bytes += this.sizes[end++]!;
      }
      requests.push(range(start, end));
      start = end;
    }
    await this.sendAll(requests);
    return this.results;
  }

  /** Sends the groups in order (ordering keys) or all at once; false when a failure stopped an ordered write. */
  private async sendAll(groups: number[][]): Promise<boolean> {
    if (!this.sink.isOrdered) {
      await Promise.all(groups.map((g) => this.send(g)));
      return true;
    }
    for (let g = 0; g < groups.length; g++) {
      if (await this.send(groups[g]!)) continue;
      for (const later of groups.slice(g + 1)) for (const j of later) this.results[j] = HELD_BACK;
      return false;
    }
    return true;
  }

  private async send(group: number[]): Promise<boolean> {
    const error = await this.sink.publishRequest(group.map((j) => this.messages[j]!));
    if (error === undefined) return true;
    if (this.sink.isRefusal(error)) {
      if (group.length === 1) {
        this.results[group[0]!] = error;
        return true;
      }
      const half = Math.ceil(group.length / 2);
      return this.sendAll([group.slice(0, half), group.slice(half)]);
    }
    for (const j of group) this.results[j] = error;
    return false;
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}
