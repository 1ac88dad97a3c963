import mqtt, { type MqttClient } from 'mqtt';
import { paddedPayload } from './disk.js';
import { waitFor } from './ports.js';

export interface SendOptions {
  bytes?: number;
  topic?: string;
}

/** Sequence numbers [from, to) of one batch of messages. */
export interface Batch {
  from: number;
  to: number;
}

/**
 * A QoS 1 publisher that remembers, by sequence number, which of its messages got a PUBACK and which were refused
 * (an MQTT 5 reason code of 0x80 or more). With `reconnect` it comes back after its connection died and MQTT.js
 * sends again what was not acknowledged, as a device does; without, what was not acknowledged stays unanswered.
 * Payloads are JSON carrying the sequence number (test/helpers/load.ts's seqOf reads it).
 */
export class AckedPublisher {
  readonly acked = new Set<number>();
  readonly refused = new Map<number, number>();
  /** The next sequence number to send. */
  next: number;
  private flowing = false;

  private constructor(
    readonly client: MqttClient,
    /** The sequence number of its first message. */
    readonly first: number,
  ) {
    this.next = first;
  }

  static async connect(url: string, opts: { protocolVersion?: 4 | 5; reconnect?: boolean; first?: number } = {}): Promise<AckedPublisher> {
    const client = await mqtt.connectAsync(url, {
      protocolVersion: opts.protocolVersion ?? 4,
      clientId: `acked-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
      clean: true,
      reconnectPeriod: opts.reconnect ? 100 : 0,
      connectTimeout: 5_000,
    });
    client.on('error', () => undefined);
    return new AckedPublisher(client, opts.first ?? 0);
  }

  /**
   * Sends `n` messages without waiting for their PUBACKs: about `bytes` bytes each, on `plant/modes/<seq % 8>`
   * unless `topic` says otherwise.
   */
  send(n: number, opts: SendOptions = {}): Batch {
    const from = this.next;
    for (let i = 0; i < n; i++) this.sendOne(opts, false);
    return { from, to: this.next };
  }

  /** Sends `n` messages and waits until each has been answered (acknowledged or refused). */
  async publish(n: number, opts: SendOptions & { timeoutMs?: number } = {}): Promise<Batch> {
    const batch = this.send(n, opts);
    await waitFor(() => this.answeredIn(batch) === n, opts.timeoutMs ?? 20_000, `answers to messages ${batch.from}..${batch.to - 1}`);
    return batch;
  }

  /** Keeps `window` messages in flight, one more for each PUBACK, until stopFlow(). */
  flow(window: number): void {
    this.flowing = true;
    for (let i = 0; i < window; i++) this.sendOne({}, true);
  }

  stopFlow(): void {
    this.flowing = false;
  }

  ackedIn(b: Batch): number {
    let n = 0;
    for (let s = b.from; s < b.to; s++) if (this.acked.has(s)) n++;
    return n;
  }

  answeredIn(b: Batch): number {
    let n = 0;
    for (let s = b.from; s < b.to; s++) if (this.acked.has(s) || this.refused.has(s)) n++;
    return n;
  }

  end(): Promise<void> {
    return this.client.endAsync(true);
  }

  private sendOne(opts: SendOptions, flow: boolean): void {
    if (flow && !this.flowing) return;
    const seq = this.next++;
    this.client.publish(opts.topic ?? `plant/modes/${seq % 8}`, paddedPayload(seq, opts.bytes ?? 200), { qos: 1 }, (err) => {
      if (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'number') this.refused.set(seq, code);
        return;
      }
      this.acked.add(seq);
      if (flow) this.sendOne(opts, true);
    });
  }
}

/** How many of [from, to) are in `stored`. */
export function countIn(stored: Set<number>, b: Batch): number {
  let n = 0;
  for (let s = b.from; s < b.to; s++) if (stored.has(s)) n++;
  return n;
}
