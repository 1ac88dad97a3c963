/**
 * Sparkplug seq numbers, per edge node, as the counting caller sees its messages: 0 on NBIRTH, then one more for
 * each message of the edge node and its devices, 255 wrapping to 0 (NDEATH and commands carry none). A seq that
 * does not follow means messages were lost or reordered on the way: counted, and logged at most once a minute
 * per edge node. The last seq of each edge node is kept in the births file, so that the first message after a
 * restart is compared too; with it, the spool seq up to which messages were counted, so that one delivered again
 * (a retry, a restart before its acknowledgement) is not counted twice.
 */
import { withCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { BirthStore, EdgeSeq } from './births.js';
import type { DecodedPayload, SparkplugTopic } from './types.js';

const GAP_LOG_INTERVAL_MS = 60_000;

type EdgeTopic = Exclude<SparkplugTopic, { type: 'STATE' }>;

export class SeqTracker {
  private readonly last = new Map<string, EdgeSeq>();
  private readonly dirty = new Map<string, EdgeSeq>();
  private countedThrough: number;
  private savedThrough: number;
  private flushing: NodeJS.Immediate | undefined;
  private readonly logged = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly o: {
      store: BirthStore;
      metrics: Pick<Metrics, 'sparkplugSeqGaps'>;
      logger: Logger;
      monotonic: () => number;
    },
  ) {
    const progress = o.store.progress();
    for (const s of progress.seqs) this.last.set(`${s.group}/${s.edgeNode}`, s);
    this.countedThrough = progress.countedThrough;
    this.savedThrough = progress.countedThrough;
  }

  /** The counting caller has not seen the message at `spoolSeq` yet (it sees them in spool order). */
  fresh(spoolSeq: number): boolean {
    return spoolSeq > this.countedThrough;
  }

  /** Counts a message the counting caller sees for the first time. */
  count(spoolSeq: number, messageId: string, key: string, t: EdgeTopic, p: DecodedPayload): void {
    this.countedThrough = spoolSeq;
    this.scheduleFlush();
    if (t.type === 'NDEATH' || t.type === 'NCMD' || t.type === 'DCMD' || p.seq === undefined) return;
    const got = Number(p.seq);
    const last = this.last.get(key);
    if (t.type !== 'NBIRTH' && last !== undefined && got !== (last.seq + 1) % 256) this.gap(key, t, messageId, (last.seq + 1) % 256, got);
    const now: EdgeSeq = { group: t.group, edgeNode: t.edgeNode, seq: got };
    this.last.set(key, now);
    this.dirty.set(key, now);
  }

  private gap(key: string, t: EdgeTopic, messageId: string, expected: number, got: number): void {
    this.o.metrics.sparkplugSeqGaps.inc();
    const now = this.o.monotonic();
    const logged = this.logged.get(key);
    if (logged && now - logged.at < GAP_LOG_INTERVAL_MS) {
      logged.suppressed += 1;
      return;
    }
    this.o.logger.warn(
      withCode('SPARKPLUG_SEQ_GAP', { group: t.group, edgeNode: t.edgeNode, expected, got, message_id: messageId, suppressed: logged?.suppressed ?? 0 }),
      `Sparkplug seq gap from ${t.group}/${t.edgeNode}: expected ${expected}, got ${got}; messages were lost or reordered on the way`,
    );
    this.logged.set(key, { at: now, suppressed: 0 });
  }

  /**
   * Written at the end of the current turn rather than per message (a commit per message would cost more than
   * routing it): a crash in between leaves the last seqs of that turn unwritten, and the first message of such an
   * edge node after the restart may count a gap that was none.
   */
  private scheduleFlush(): void {
    if (this.flushing) return;
    this.flushing = setImmediate(() => {
      this.flushing = undefined;
      this.flush();
    });
    this.flushing.unref();
  }

  /** Writes what changed; a failure (a full disk) is tried again at the next change or at close. */
  flush(): void {
    if (this.flushing) {
      clearImmediate(this.flushing);
      this.flushing = undefined;
    }
    if (this.dirty.size === 0 && this.savedThrough === this.countedThrough) return;
    try {
      this.o.store.saveProgress([...this.dirty.values()], this.countedThrough);
      this.dirty.clear();
      this.savedThrough = this.countedThrough;
    } catch (err) {
      this.o.logger.debug({ err: (err as Error).message }, 'Sparkplug seq progress not written; it is written with the next change');
    }
  }
}
