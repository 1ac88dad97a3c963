/** What a spool is opened with (Spool.open) and what it reports of itself (Spool.stats). */
import type { Clock } from '../core/clock.js';
import type { SinkName } from '../core/message.js';
import type { DeadLetterInput } from './dead-letters.js';
import type { StatFs } from './disk-space.js';

export interface SpoolOptions {
  /** Directory that holds `spool.db`. */
  dir: string;
  maxBytes: number;
  /** Sinks a new message is routed to. */
  sinks: SinkName[];
  /** `full` (default): fsync each commit; `normal`: survive process crashes, not power loss. */
  sync?: 'full' | 'normal';
  /**
   * SPOOL_MIN_FREE_BYTES: the spool counts as full when a commit would leave less free disk than this, counting
   * the free pages inside spool.db as free (disk-space.ts). Default 256 MiB.
   */
  minFreeDiskBytes?: number;
  /** Wall-clock time, for timestamps (dead_at, the readiness write check). */
  clock?: Clock;
  /** Monotonic milliseconds, for cache ages and intervals (default performance.now()). */
  monotonic?: () => number;
  /** statfs(2) of the spool's directory (tests pass their own). */
  statfs?: StatFs;
  /**
   * Start although the spool holds less than was committed (commit-record.ts): the loss is accepted and
   * reported in `openWarnings`, the damaged WAL is kept aside. Meant for one start after an operator has
   * looked; without it such a spool is refused with SpoolDamagedError.
   */
  acceptLoss?: boolean;
  /**
   * Called with the messages found corrupt when leased (bytes that no longer match their checksum), after
   * they were dead-lettered with reason `corrupt` for that sink: the node counts and logs them.
   */
  onCorrupt?: (sink: SinkName, items: readonly DeadLetterInput[]) => void;
  /** Information for the log while the node runs (an old spool.db switched to giving space back). */
  onNote?: (message: string) => void;
}

export interface SpoolStats {
  messages: number;
  bytes: number;
  maxBytes: number;
  full: boolean;
  /** Why it is full, in plain words: `SPOOL_MAX_BYTES reached: …` or `disk: …`. */
  fullReason?: string;
  /** Free bytes of the file system that holds the spool (statfs), and free pages inside spool.db. */
  diskFreeBytes?: number;
  reusableBytes: number;
  minFreeBytes: number;
  oldestReceivedAt: number | null;
  /** The seq of the oldest message held for any sink (what Sparkplug births must still serve); null when none or closed. */
  oldestSeq: number | null;
  pending: Record<string, number>;
  deadLetters: number;
}
