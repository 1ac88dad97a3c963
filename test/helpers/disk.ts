import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';

/** Mounting a tmpfs needs root (CI runs as root). */
export const isRoot = process.getuid?.() === 0;

/** A fresh tmpfs of `size` (mount's syntax: `100m`) on a new directory; `unmountTmpfs` takes it away. */
export function mountTmpfs(size: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  return dir;
}

/** Lazily (a process killed with its files open may still hold them), then the directory. */
export function unmountTmpfs(dir: string): void {
  execFileSync('umount', ['-l', dir]);
  rmSync(dir, { recursive: true, force: true });
}

/** Fills the file system of `dir` to its last byte with one file; returns its path (remove it to give the space back). */
export function fillDisk(dir: string): string {
  const file = path.join(dir, 'filler');
  const fd = openSync(file, 'w');
  try {
    for (const size of [1024 * 1024, 64 * 1024, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
  return file;
}

/**
 * The file names the file sink writes in `dir` the hour before, this hour and the next (the sink names files by
 * the node's wall clock, which a test may set back), made directories: every write fails (retryable, so rows stay
 * pending). The returned function lets it write again.
 */
export function blockFileSink(dir: string): () => void {
  const hour = (ms: number) => new Date(ms).toISOString().slice(0, 13).replace(/-/g, '').replace(':', '');
  const dirs = [-1, 0, 1].map((h) => path.join(dir, `messages-${hour(Date.now() + h * 3_600_000)}-0000.ndjson`));
  for (const d of dirs) mkdirSync(d, { recursive: true });
  return () => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
}

/** A JSON payload of about `bytes` bytes carrying `seq` (test/helpers/load.ts's seqOf reads it). */
export function paddedPayload(seq: number, bytes: number): string {
  const head = `{"seq":${seq},"pad":"`;
  return head + 'x'.repeat(Math.max(0, bytes - head.length - 2)) + '"}';
}

/**
 * A QoS 1 publisher that counts PUBACKs. `flow` keeps `window` messages in flight, sending one more for each
 * PUBACK, until `stopFlow`: when the node stops acknowledging (a full spool), sending stops with it.
 */
export class CountingPublisher {
  sent = 0;
  acked = 0;
  /** performance.now() of the last PUBACK. */
  lastAckAt = performance.now();
  readonly errors: Error[] = [];
  private flowing = false;

  private constructor(
    private readonly client: MqttClient,
    private readonly payloadBytes: number,
  ) {}

  static async connect(url: string, payloadBytes: number): Promise<CountingPublisher> {
    const client = await mqtt.connectAsync(url, { clientId: `counting-${process.pid}-${Date.now()}`, protocolVersion: 4, clean: true, reconnectPeriod: 0 });
    return new CountingPublisher(client, payloadBytes);
  }

  flow(window: number): void {
    this.flowing = true;
    for (let i = 0; i < window; i++) this.sendOne(true);
  }

  stopFlow(): void {
    this.flowing = false;
  }

  /** Sends `n` more messages (not waiting for their PUBACKs). */
  send(n: number): void {
    for (let i = 0; i < n; i++) this.sendOne(false);
  }

  /** Milliseconds since the last PUBACK. */
  get quietMs(): number {
    return performance.now() - this.lastAckAt;
  }

  private sendOne(flow: boolean): void {
    if (flow && !this.flowing) return;
    const seq = this.sent++;
    this.client.publish(`plant/disk/${seq % 16}`, paddedPayload(seq, this.payloadBytes), { qos: 1 }, (err) => {
      if (err) {
        this.errors.push(err);
        return;
      }
      this.acked += 1;
      this.lastAckAt = performance.now();
      if (flow) this.sendOne(true);
    });
  }

  async end(): Promise<void> {
    await this.client.endAsync(true);
  }
}
