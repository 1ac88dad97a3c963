import { mkdir, open, readdir, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { encodePayload, rfc3339 } from '../../core/message.js';
import { delivered, type DeliveryOutcome } from '../../core/outcome.js';
import type { Clock } from '../../core/clock.js';
import { systemClock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { withCode } from '../../core/errors.js';
import type { DeliveryMessage, Sink, SinkDescription } from '../sink.js';

export interface FileSinkOptions {
  dir: string;
  rotateBytes: number;
  logger: Logger;
  clock?: Clock;
}

/**
 * One NDJSON line per message: the contract's fields, payload as text or base64, and the MQTT 5 properties:
 * `user_properties` (an object, name to value or to the array of a repeated name's values) and
 * `content_type`, both null when the message had none, so that every line has the same keys. A routed message
 * (ROUTES_FILE) adds `route` and `fields`.
 */
export function toFileRecord(m: DeliveryMessage): string {
  const line = JSON.stringify({
    message_id: m.messageId,
    topic: m.topic,
    qos: m.qos,
    retain: m.retain,
    received_at: rfc3339(m.receivedAt),
    ...encodePayload(m.payload),
    user_properties: m.properties?.userProperties ?? null,
    content_type: m.properties?.contentType ?? null,
  });
  // A routed message's line also names its route and carries its topic variables and typed fields.
  const routed = m.routed?.file;
  return routed ? `${line.slice(0, -1)},"route":${JSON.stringify(m.routed!.route)},"fields":${routed.fieldsJson}}` : line;
}

const FILE_RE = /^messages-(\d{8}T\d{2})-(\d{4})\.ndjson$/;

function hourKey(ms: number): string {
  return new Date(ms).toISOString().slice(0, 13).replace(/-/g, '').replace(':', '');
}

/**
 * Writes messages as NDJSON files under `dir`: `messages-<UTC yyyymmddThh>-<nnnn>.ndjson`, a new file
 * each UTC hour and whenever the current one would pass `rotateBytes`. Each batch is written and
 * fdatasync'ed before it is answered `delivered`, so a message leaves the spool only once it is on disk
 * (stronger than the "flushed within 2 s" users were promised). Writes are serial (maxInFlight 1). A failed
 * write throws: its runner shows the error and retries the batch.
 */
export class FileSink implements Sink {
  readonly name = 'file' as const;
  readonly maxBatchMessages = 2000;
  readonly maxBatchBytes = 8 * 1024 * 1024;
  readonly maxInFlight = 1;
  readonly describe: SinkDescription;
  private handle: FileHandle | undefined;
  private currentHour = '';
  private currentIndex = 0;
  private currentBytes = 0;
  private readonly clock: Clock;
  private started = false;

  constructor(private readonly opts: FileSinkOptions) {
    this.clock = opts.clock ?? systemClock;
    this.describe = { detail: `writing NDJSON under ${opts.dir}` };
  }

  async start(): Promise<void> {
    await mkdir(this.opts.dir, { recursive: true });
    this.started = true;
  }

  async write(batch: DeliveryMessage[]): Promise<DeliveryOutcome[]> {
    if (!this.started) throw new Error('the file sink is not started (or already closed)');
    try {
      const text = batch.map(toFileRecord).join('\n') + '\n';
      const bytes = Buffer.byteLength(text);
      const handle = await this.fileFor(bytes);
      await handle.write(text);
      await handle.datasync();
      this.currentBytes += bytes;
      return batch.map(() => delivered);
    } catch (err) {
      // A failed write may have left part of the batch in the file; start a new file so no line is torn
      // across a retry (the retry writes the whole batch again: readers de-duplicate by message_id).
      await this.closeHandle();
      throw err;
    }
  }

  private async fileFor(incoming: number): Promise<FileHandle> {
    const hour = hourKey(this.clock.now());
    if (this.handle && hour === this.currentHour && this.currentBytes + incoming <= this.opts.rotateBytes) return this.handle;
    if (this.handle && hour === this.currentHour) this.currentIndex += 1;
    await this.closeHandle();
    if (hour !== this.currentHour) {
      this.currentHour = hour;
      this.currentIndex = await this.lastIndexFor(hour);
    }
    for (;;) {
      const file = path.join(this.opts.dir, `messages-${hour}-${String(this.currentIndex).padStart(4, '0')}.ndjson`);
      const size = await stat(file).then((s) => s.size, () => 0);
      if (size > 0 && size + incoming > this.opts.rotateBytes) {
        this.currentIndex += 1;
        continue;
      }
      this.handle = await open(file, 'a+');
      this.currentBytes = size > 0 ? await this.dropTornTail(this.handle, size) : 0;
      this.opts.logger.debug({ file }, 'file sink writing');
      return this.handle;
    }
  }

  /**
   * A crash in the middle of a write can leave a partial last line. Its batch was never answered
   * `delivered`, so it is written again whole; the torn bytes are cut off so every line stays valid JSON.
   */
  private async dropTornTail(handle: FileHandle, size: number): Promise<number> {
    const tailSize = Math.min(size, 1024 * 1024);
    const tail = Buffer.alloc(tailSize);
    await handle.read(tail, 0, tailSize, size - tailSize);
    if (tail[tailSize - 1] === 0x0a) return size;
    const lastNewline = tail.lastIndexOf(0x0a);
    const keep = lastNewline >= 0 ? size - tailSize + lastNewline + 1 : size > tailSize ? size : 0;
    await handle.truncate(keep);
    this.opts.logger.warn(withCode('FILE_SINK_PARTIAL_LINE', { cutBytes: size - keep }), 'file sink: removed a partial line left by a crash (its messages are written again)');
    return keep;
  }

  /** After a restart, continue the hour's last file instead of starting at 0000 again. */
  private async lastIndexFor(hour: string): Promise<number> {
    const names = await readdir(this.opts.dir).catch(() => [] as string[]);
    let max = 0;
    for (const n of names) {
      const m = FILE_RE.exec(n);
      if (m && m[1] === hour) max = Math.max(max, Number(m[2]));
    }
    return max;
  }

  private async closeHandle(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.started = false;
    await this.closeHandle();
  }
}
