import path from 'node:path';
import type { Config } from './config/load.js';
import type { Logger } from './core/logger.js';
import type { SinkName } from './core/message.js';
import { Metrics } from './core/metrics.js';
import { HttpServer } from './http/server.js';
import { Spool } from './spool/spool.js';
import { SpoolWriter } from './spool/group-commit.js';
import { Dispatcher } from './dispatch/dispatcher.js';
import type { Sink } from './sinks/sink.js';
import { buildSinks, sinkDestinations } from './sinks/registry.js';
import { loadRoutes } from './routes/config.js';
import { Router } from './routes/router.js';
import { sinkRouting } from './routes/destinations.js';
import { birthsFile } from './sparkplug/births.js';
import { sparkplugHostSettings } from './sparkplug/config.js';
import { SparkplugNodeHost } from './sparkplug/host.js';
import { rebirthPayload, rebirthTopic } from './sparkplug/host-rebirth.js';
import { runnerOptions } from './dispatch/config.js';
import { httpOptions } from './http/config.js';
import { spoolOptions } from './spool/config.js';
import { SourceWatch } from './sources/sources.js';
import type { Intake, IntakeMode } from './intake/intake.js';
import { createIntake, resolveBrokerMode } from './intake/create-intake.js';
import { insecureFindings } from './intake/security/policy.js';
import { IngestError, StartAbortedError, withCode } from './core/errors.js';
import { nodeVersion } from './core/version.js';
import { monotonicMs } from './core/clock.js';
import { StatusHistory } from './http/status-history.js';
import { DeadLetterCounts } from './http/dead-letter-counts.js';
import { routeDestinations } from './routes/describe.js';
import { statusBody, type StatusBody } from './http/status-api.js';
import { NodeLeave, type LeaveAnswer } from './node-leave.js';

/**
 * Starts and stops the node's components in data-path order (ARCHITECTURE §1): spool → sinks and dispatcher →
 * http → intake (the broker mode's way of taking messages in, src/intake/); SIGTERM undoes it: the intake stops
 * taking messages, in-flight batches are flushed, the spool is closed, then the intake stops the rest (the
 * Mosquitto child). HTTP starts before the intake so that /readyz answers 503 with the reason while the broker starts.
 */
export class IngestNode {
  readonly metrics = new Metrics();
  readonly mode: IntakeMode;
  private spool!: Spool;
  private writer!: SpoolWriter;
  private dispatcher!: Dispatcher;
  private router: Router | undefined;
  private sparkplug: SparkplugNodeHost | undefined;
  private sinks: Sink[] = [];
  private intake: Intake | undefined;
  private http!: HttpServer;
  private sources: SourceWatch | undefined;
  private gaugeTimer: NodeJS.Timeout | undefined;
  private history: StatusHistory | undefined;
  private readonly startedAt = Date.now();
  private stopping = false;
  private fatal: string | undefined;
  private onFatal!: (reason: string) => void;
  private readonly fatalReason = new Promise<string>((resolve) => (this.onFatal = resolve));
  /** pprd/prd weaknesses allowed by MQTT_ALLOW_INSECURE, shown in the readiness JSON. */
  private readonly insecure: string[];
  httpPort = 0;
  private starting: Promise<void> | undefined;
  /** `mqtt-ingest leave` (POST /leave): once asked, the node never takes messages again (node-leave.ts). */
  private readonly leaving: NodeLeave;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    this.mode = resolveBrokerMode(config);
    this.insecure = insecureFindings(config);
    this.leaving = new NodeLeave({
      intake: () => this.intake,
      held: () => {
        if (!this.spool || this.spool.isClosed) return undefined;
        const s = this.spool.stats();
        return { spool: s.messages, committing: this.writer?.waiting ?? 0, pending: s.pending };
      },
      stopping: () => this.stopping,
      logger: this.logger,
    });
  }

  /** Starts the node. A stop() that arrives meanwhile ends the start at the next step (StartAbortedError). */
  start(): Promise<void> {
    this.starting = this.startSteps();
    return this.starting;
  }

  /**
   * The node as a Sparkplug host (docs/sparkplug.md), for the Sparkplug routes: births kept beside the spool, and
   * with SPARKPLUG_REBIRTH on, rebirth commands published through the intake (QoS 0, as Sparkplug has them).
   */
  private sparkplugHost(dataDir: string): SparkplugNodeHost {
    const logger = this.logger.child({ component: 'sparkplug' });
    const requestRebirth = (group: string, edgeNode: string) => {
      const topic = rebirthTopic(group, edgeNode);
      if (!this.intake) return logger.warn(withCode('SPARKPLUG_REBIRTH_FAILED', { group, edgeNode, reason: 'unavailable' }), 'rebirth not sent: the broker is not up yet');
      this.intake.publish(topic, rebirthPayload(Date.now()), { qos: 0 }).catch((err: Error) => {
        logger.warn(withCode('SPARKPLUG_REBIRTH_FAILED', { group, edgeNode, reason: (err as { reason?: string }).reason ?? 'error', err: err.message }), `rebirth command to ${topic} not sent`);
      });
    };
    return new SparkplugNodeHost({
      file: birthsFile(dataDir),
      spoolId: this.spool.getMeta('spool_id')!,
      oldestSpoolSeq: () => {
        if (this.spool.isClosed) throw new Error('the spool is closed');
        return this.spool.stats().oldestSeq ?? undefined;
      },
      requestRebirth,
      ...sparkplugHostSettings(this.config),
      monotonic: monotonicMs,
      metrics: this.metrics,
      logger,
    });
  }

  /** Between start steps: a SIGTERM during start-up stops it here instead of starting what comes next. */
  private checkNotStopping(): void {
    if (this.stopping) throw new StartAbortedError();
  }

  private async startSteps(): Promise<void> {
    const c = this.config;
    const dataDir = path.resolve(c.DATA_DIR);
    // The configuration's rule checked the routes file already; read again here, it is what delivery applies.
    const routes = loadRoutes(c);
    this.sinks = buildSinks(c, dataDir, this.logger, this.metrics, routes ? sinkRouting(routes) : undefined);
    if (routes) {
      this.logger.info(
        withCode('ROUTES_LOADED', { file: routes.file, routes: routes.routes.map((r) => r.name), unmatched: routes.unmatched }),
        `${routes.routes.length} routes from ${routes.file}; what matches none: ${routes.unmatched}`,
      );
    }
    const sinkNames = this.sinks.map((s) => s.name) as SinkName[];
    this.metrics.initDeadLetters(sinkNames, { routes: routes !== undefined });
    if (sinkNames.length === 0) {
      this.logger.warn(withCode('NO_SINK_ENABLED'), 'no sink is enabled (FILE_SINK=off and no cloud sink): messages are spooled and counted only');
    }
    this.logger.info(withCode('NODE_STARTING', { version: nodeVersion(), mode: this.mode, appEnv: c.APP_ENV }), 'mqtt-ingest starting');
    this.spool = openSpool(dataDir, {
      ...spoolOptions(c),
      sinks: sinkNames,
      // Stored bytes that no longer match their checksum are dead-lettered at lease (reason corrupt), never delivered.
      onCorrupt: (sink, items) => {
        this.metrics.deadLetters.inc({ sink, reason: 'corrupt' }, items.length);
        for (const d of items) {
          this.logger.error(
            withCode('MESSAGE_DEAD_LETTERED', { sink, reason: d.reason, detail: d.detail, message_id: d.message.messageId, topic: d.message.topic }),
            'message dead-lettered',
          );
        }
      },
      onNote: (note) => this.logger.info({ component: 'spool' }, note),
    });
    for (const w of this.spool.openWarnings) this.logger.warn(withCode(w.code), w.message);
    for (const n of this.spool.openNotes) this.logger.info({ component: 'spool' }, n);
    this.metrics.spoolMaxBytes.set(c.SPOOL_MAX_BYTES);
    for (const [sink, n] of Object.entries(this.spool.releasedAtOpen)) {
      this.metrics.deadLetters.inc({ sink, reason: 'sink_disabled' }, n);
      this.logger.warn(
        withCode('SINK_DISABLED_DEAD_LETTERED', { sink, messages: n }),
        `${n} messages were waiting for the ${sink} sink, which is no longer configured: they are in the dead-letter store (mqtt-ingest dlq list --sink ${sink}; dlq replay after enabling it again)`,
      );
    }
    if (routes) {
      this.sparkplug = routes.routes.some((r) => r.decode === 'sparkplug') ? this.sparkplugHost(dataDir) : undefined;
      this.router = new Router(routes, this.sparkplug);
    }
    this.sources = new SourceWatch({ config: c, dataDir, metrics: this.metrics, logger: this.logger.child({ component: 'sources' }) });
    this.sources.start();
    this.sources.tap(this.spool);
    this.writer = new SpoolWriter(this.spool, { metrics: this.metrics, logger: this.logger.child({ component: 'spool' }) });
    for (const s of this.sinks) {
      await s.start();
      this.checkNotStopping();
    }
    this.dispatcher = new Dispatcher(this.sinks, this.spool, this.logger, this.metrics, runnerOptions(c), this.router);
    this.dispatcher.start();
    // The page's dead letters are what the store holds (across restarts), counted at most every 10 s; once the spool
    // is closed the count fails and the last one stays.
    const deadLetters = new DeadLetterCounts({ count: () => this.spool.deadLetters.countsByReason() });
    this.history = new StatusHistory({ registry: this.metrics.registry, refresh: () => this.refreshMetrics(), deadLetters });
    this.history.start();
    const history = this.history;
    const status = () =>
      statusBody({
        readiness: this.readiness(),
        history,
        startedAt: this.startedAt,
        config: { appEnv: c.APP_ENV, sinks: sinkDestinations(c) },
        routes: this.router?.table.routes.map((r) => routeDestinations(r, c.GCP_PROJECT_ID)),
        routesUnmatched: this.router?.table.unmatched,
        sources: silentSources(this.sources),
      });
    this.http = new HttpServer({ ...httpOptions(c), logger: this.logger.child({ component: 'http' }), metrics: this.metrics, health: this, status, sources: this.sources });
    this.httpPort = await this.http.start();
    this.checkNotStopping();
    // The dlq commands change the spool file from another process: recount now and then.
    // A recount that fails (the file locked by a dlq command past busy_timeout, a disk error) is tried again at the
    // next tick: thrown out of a timer it would end the process.
    this.gaugeTimer = setInterval(() => {
      try {
        this.spool.refreshCounters();
      } catch (err) {
        this.logger.warn(withCode('SPOOL_RECOUNT_FAILED', { err: (err as Error).message }), 'spool recount failed; the counters are recounted at the next tick');
      }
    }, 30_000);
    this.gaugeTimer.unref();

    this.intake = createIntake(this.mode, {
      config: c,
      dataDir,
      writer: this.writer,
      meta: this.spool,
      logger: this.logger,
      metrics: this.metrics,
      onCommitted: () => this.dispatcher.notify(),
      // A crash loop of the node's own broker: no longer live, and `run` exits non-zero so that the platform restarts it.
      onFatal: (reason) => this.markFatal(reason),
    });
    await this.intake.start();
    this.checkNotStopping();
    this.logger.info(
      withCode('NODE_STARTED', {
        version: nodeVersion(),
        mode: this.mode,
        sinks: sinkNames,
        dataDir,
        mqttPort: c.MQTT_PORT,
        httpPort: this.httpPort,
        appEnv: c.APP_ENV,
      }),
      'mqtt-ingest started',
    );
  }

  isLive(): boolean {
    return this.fatal === undefined;
  }

  readiness(): { ready: boolean; components: Record<string, unknown> } {
    const spoolOk = !!this.spool && !this.spool.isClosed;
    const stats = spoolOk ? this.spool.stats() : undefined;
    const writable = spoolOk && this.spool.isWritable();
    const intake = this.intake?.status();
    const ready = !this.stopping && !this.leaving.active && (this.intake?.readiness().ready ?? false) && writable && !!stats && !stats.full;
    return {
      ready,
      components: {
        version: nodeVersion(),
        mode: this.mode,
        stopping: this.stopping || undefined,
        leave: this.leaving.status(),
        broker: intake?.broker ?? { state: 'starting' },
        source: intake?.source ?? { state: 'starting' },
        security: this.insecure.length > 0 ? { insecure: this.insecure } : undefined,
        spool: stats ? { ...stats, writable, oldestAgeSeconds: ageSeconds(stats.oldestReceivedAt) } : { state: 'closed' },
        sinks: this.dispatcher?.status() ?? {},
      },
    };
  }

  refreshMetrics(): void {
    // As /readyz would answer now: without it the gauge moved only when a probe called /readyz.
    this.metrics.ready.set(this.readiness().ready ? 1 : 0);
    if (!this.spool || this.spool.isClosed) return;
    const s = this.spool.stats();
    const m = this.metrics;
    m.spoolMessages.set(s.messages);
    m.spoolBytes.set(s.bytes);
    m.spoolFull.set(s.full ? 1 : 0);
    if (s.diskFreeBytes !== undefined) m.spoolDiskFree.set(s.diskFreeBytes + s.reusableBytes);
    m.spoolOldestAge.set(ageSeconds(s.oldestReceivedAt));
    m.deadLettersHeld.set(s.deadLetters);
    for (const [sink, n] of Object.entries(s.pending)) m.spoolPending.set({ sink }, n);
  }

  /** Marks the node not live (the platform restarts it) when a component cannot recover. */
  markFatal(reason: string): void {
    this.fatal = reason;
    this.logger.fatal(withCode('NODE_FATAL', { reason }), 'node cannot recover; liveness now fails');
    this.onFatal(reason);
  }

  /** Resolves with the reason once the node marked itself not live (`run` then stops and exits non-zero). */
  whenFatal(): Promise<string> {
    return this.fatalReason;
  }

  /**
   * POST /leave (`mqtt-ingest leave`, scale-down): the intake stops taking messages for good and the spool drains
   * to the sinks within `deadlineSeconds`; readiness answers 503 from now on (node-leave.ts).
   */
  leave(deadlineSeconds: number): LeaveAnswer {
    return this.leaving.begin(deadlineSeconds);
  }

  /** SIGHUP: the broker re-reads its password file, ACL file and certificates; connected clients stay. */
  async reload(): Promise<void> {
    await this.intake?.reload();
  }

  /**
   * SIGTERM: stop taking messages (messages not yet committed stay unacknowledged at the broker), flush
   * in-flight batches for up to SHUTDOWN_TIMEOUT_MS, close the spool, stop the intake (the Mosquitto child).
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // Let a start in progress reach its next step and give up there, then stop what it started.
    await this.starting?.catch(() => undefined);
    const started = monotonicMs();
    this.logger.info('stopping: no new messages are taken');
    if (this.gaugeTimer) clearInterval(this.gaugeTimer);
    await this.intake?.stopTaking();
    this.writer?.close();
    const flushed = (await this.dispatcher?.stop(this.config.SHUTDOWN_TIMEOUT_MS)) ?? true;
    if (!flushed) this.logger.warn(withCode('SHUTDOWN_FLUSH_TIMEOUT'), 'in-flight batches did not finish in time; they stay in the spool and are sent after restart');
    for (const s of this.sinks) {
      await s.close().catch((err: Error) => this.logger.warn(withCode('SINK_CLOSE_FAILED', { sink: s.name, err: err.message }), 'sink close failed'));
    }
    this.sparkplug?.close();
    this.spool?.close();
    this.sources?.close();
    await this.intake?.stop();
    this.history?.stop();
    await this.http?.stop();
    this.logger.info(withCode('NODE_STOPPED', { ms: Math.round(monotonicMs() - started) }), 'stopped');
  }
}

/**
 * Opens the spool under DATA_DIR. A file-system error (a DATA_DIR made read-only or removed after the config
 * check, "unable to open database file") is reworded to name DATA_DIR and the path; other errors pass as they are.
 */
function openSpool(dataDir: string, opts: Omit<Parameters<typeof Spool.open>[0], 'dir'>): Spool {
  const dir = path.join(dataDir, 'spool');
  try {
    return Spool.open({ dir, ...opts });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const fsCodes = ['ENOENT', 'EEXIST', 'ENOTDIR', 'EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'SQLITE_CANTOPEN', 'SQLITE_READONLY'];
    if (e.code === undefined || !fsCodes.includes(e.code)) throw err;
    throw new IngestError(
      'SPOOL_OPEN_FAILED',
      `cannot open the spool in ${JSON.stringify(dir)} (DATA_DIR=${JSON.stringify(dataDir)}): ${e.message}; ` +
        'DATA_DIR must be a directory on a writable disk with free space',
      { cause: err, context: { dataDir, dir } },
    );
  }
}

function ageSeconds(ms: number | null): number {
  return ms === null ? 0 : Math.max(0, (Date.now() - ms) / 1000);
}

/** How many silent sources /api/status lists (the whole table is at /api/sources). */
const STATUS_SILENT_SHOWN = 100;

/** The silent sources for the status page (the whole table is at /api/sources). */
function silentSources(sources: SourceWatch | undefined): StatusBody['sources'] {
  if (!sources) return undefined;
  const r = sources.report(true);
  // The page reads this every 5 s: it lists the first few (by topic), and the count says how many there are.
  const silent = r.sources.slice(0, STATUS_SILENT_SHOWN).map((x) => ({ topic: x.topic, lastSeenAt: x.lastSeenAt, quietSeconds: x.quietSeconds }));
  return { silentAfterSeconds: r.silentAfterSeconds, count: r.silent, silent };
}
