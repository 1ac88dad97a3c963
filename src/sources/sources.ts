/**
 * "Which sensor went quiet?": the node's source table (tracker.ts) fed from every spool commit, kept in
 * `DATA_DIR/sources.db` (store.ts), shown by `GET /api/sources` and counted by the `mqtt_ingest_sources_*` metrics
 * (docs/operations.md, "Silent sources").
 */
import path from 'node:path';
import { Counter, Gauge } from 'prom-client';
import { withCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { AppendResult, SourcedMessage, Spool } from '../spool/spool.js';
import type { SourcesConfig } from './config.js';
import { SAVE_INTERVAL_MS, SourceStore } from './store.js';
import { SourceTracker, type SourcesReport } from './tracker.js';

export function sourcesFile(dataDir: string): string {
  return path.join(dataDir, 'sources.db');
}

export class SourceWatch {
  readonly tracker: SourceTracker;
  private store: SourceStore | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: { config: SourcesConfig; dataDir: string; metrics: Metrics; logger: Logger; now?: () => number },
  ) {
    const untracked = new Counter({
      name: 'mqtt_ingest_sources_untracked_total',
      help: 'Messages on topics first seen while the source table held SOURCES_MAX topics: counted, not tracked.',
      registers: [opts.metrics.registry],
    });
    this.tracker = new SourceTracker({
      max: opts.config.SOURCES_MAX,
      silentAfterSeconds: opts.config.SILENT_AFTER_SECONDS,
      now: opts.now,
      onUntracked: () => untracked.inc(),
    });
    const tracker = this.tracker;
    new Gauge({
      name: 'mqtt_ingest_sources_silent',
      help: 'Tracked MQTT topics with no message for longer than SILENT_AFTER_SECONDS (GET /api/sources lists them).',
      registers: [opts.metrics.registry],
      collect() {
        this.set(tracker.silentCount());
      },
    });
    new Gauge({
      name: 'mqtt_ingest_sources_tracked',
      help: 'MQTT topics in the source table (at most SOURCES_MAX).',
      registers: [opts.metrics.registry],
      collect() {
        this.set(tracker.tracked);
      },
    });
  }

  /** Opens the file and loads the table; a file that cannot be used is set aside and the table starts empty. */
  start(): void {
    const file = sourcesFile(this.opts.dataDir);
    const logger = this.opts.logger;
    try {
      this.store = SourceStore.open(file);
      this.tracker.load(this.store.load());
    } catch (err) {
      this.store?.close();
      this.store = undefined;
      const setAside = SourceStore.setAside(file);
      logger.warn(
        withCode('SOURCES_STATE_DAMAGED', { file, setAside, err: (err as Error).message }),
        `the source table ${file} cannot be read (${(err as Error).message}); set aside as ${setAside}, starting with an empty table`,
      );
      this.store = SourceStore.open(file);
    }
    logger.info({ file, tracked: this.tracker.tracked }, `source table loaded: ${this.tracker.tracked} topics`);
    this.timer = setInterval(() => this.save(), SAVE_INTERVAL_MS);
    this.timer.unref();
  }

  /**
   * Every committed batch passes here: the spool's append is wrapped so that what it stored (not a broker's
   * redelivery of a message already held) is observed, in every broker mode, with no allocation per message.
   */
  tap(spool: Spool): void {
    const append = spool.append.bind(spool);
    const tracker = this.tracker;
    spool.append = (messages: readonly SourcedMessage[]): AppendResult[] => {
      const results = append(messages);
      try {
        for (let i = 0; i < messages.length; i++) if (results[i]?.stored) tracker.observe(messages[i]!.topic, messages[i]!.receivedAt);
      } catch {
        // the messages are committed whatever happens here: a failure must not look like a failed commit
      }
      return results;
    };
  }

  report(silentOnly: boolean): SourcesReport {
    return this.tracker.report(silentOnly);
  }

  /** Writes what changed; a failed write (a full disk) is tried again at the next interval. */
  private save(): void {
    if (!this.store) return;
    const dirty = this.tracker.takeDirty();
    try {
      this.store.save(dirty);
    } catch (err) {
      this.tracker.restoreDirty(dirty);
      this.opts.logger.warn(
        withCode('SOURCES_SAVE_FAILED', { err: (err as Error).message }),
        `the source table could not be saved (${(err as Error).message}); tried again in ${SAVE_INTERVAL_MS / 1000} s`,
      );
    }
  }

  /** Saves once more and closes the file. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.save();
    this.store?.close();
    this.store = undefined;
  }
}
