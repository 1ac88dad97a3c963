import mqtt from 'mqtt';
import { pullAll, type Received } from './pubsub-emulator.js';

/** A ~200-byte JSON payload like a pressure sensor's, carrying the sequence number that tests check. */
export function sensorPayload(seq: number): string {
  const base = { seq, sensor: `PT-${String(seq % 64).padStart(3, '0')}`, bar: 1.2 + (seq % 1000) / 1000, unit: 'bar', site: 'pit-north', ts: 1_764_000_000_000 + seq };
  const text = JSON.stringify(base);
  return JSON.stringify({ ...base, pad: 'x'.repeat(Math.max(0, 200 - text.length - 10)) });
}

export function seqOf(payload: Buffer | string): number {
  return (JSON.parse(payload.toString()) as { seq: number }).seq;
}

/**
 * Publishes messages `from`..`to-1` at QoS 1 with a bounded in-flight window, resolving when the broker
 * has acknowledged each. `onProgress` sees the count acknowledged so far (to act mid-stream).
 */
export async function publishRange(
  url: string,
  from: number,
  to: number,
  opts: {
    topic?: (i: number) => string;
    /** The payload of message i; default sensorPayload(i). */
    payload?: (i: number) => Buffer | string;
    window?: number;
    onProgress?: (acked: number) => void;
    clientId?: string;
    ratePerSec?: number;
    /** Stop sending when aborted; resolves once what was sent is acknowledged. */
    signal?: AbortSignal;
  } = {},
): Promise<number> {
  const client = await mqtt.connectAsync(url, { clientId: opts.clientId ?? `load-${process.pid}-${Date.now()}-${from}`, protocolVersion: 4, clean: true });
  const window = opts.window ?? 500;
  let next = from;
  let acked = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      let inflight = 0;
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      const pump = () => {
        if (opts.signal?.aborted && inflight === 0) return resolve();
        while (inflight < window && next < to && !opts.signal?.aborted) {
          if (opts.ratePerSec && next - from >= ((Date.now() - started) / 1000) * opts.ratePerSec) {
            timer ??= setTimeout(() => {
              timer = undefined;
              pump();
            }, 5);
            return;
          }
          const i = next++;
          inflight += 1;
          const payload = opts.payload ? opts.payload(i) : sensorPayload(i);
          client.publish(opts.topic ? opts.topic(i) : `plant/pit-north/pressure/${i % 64}`, payload, { qos: 1 }, (err) => {
            if (err) return reject(err);
            inflight -= 1;
            acked += 1;
            opts.onProgress?.(acked);
            if (acked === to - from || (opts.signal?.aborted && inflight === 0)) resolve();
            else pump();
          });
        }
      };
      pump();
    });
  } finally {
    await client.endAsync();
  }
  return acked;
}

/**
 * Pulls from a subscription until `unique(received)` reaches `expected` (duplicates are allowed and
 * kept), or the timeout passes. Returns everything received.
 */
export async function pullUntilUnique(
  host: string,
  projectId: string,
  sub: string,
  expected: number,
  unique: (r: Received) => string | number,
  timeoutMs: number,
): Promise<Received[]> {
  const all: Received[] = [];
  const seen = new Set<string | number>();
  const deadline = Date.now() + timeoutMs;
  while (seen.size < expected && Date.now() < deadline) {
    const batch = await pullAll(host, projectId, sub, expected - seen.size, deadline - Date.now());
    for (const r of batch) {
      all.push(r);
      seen.add(unique(r));
    }
  }
  return all;
}
