import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { Backoff } from '../../core/backoff.js';
import { BrokerError, withCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import { OWN_BROKER_MQTT_VERSIONS, type BrokerState, type BrokerStatus } from '../intake.js';
import { brokerMetrics, type BrokerMetrics } from '../broker-metrics.js';
import { mosquittoPaths, renderMosquittoConf } from './mosquitto-conf.js';
import { MosquittoLogClassifier } from './mosquitto-log.js';
import { MosquittoChild } from './mosquitto-child.js';
import { MosquittoSecurity, type SubscriberAuth } from './mosquitto-security.js';
import { openPlaintext } from '../security/policy.js';
import { CrashLoop } from './crash-loop.js';
import { BrokerProbe } from './broker-probe.js';
import { canConnect, currentUser, exitReason, formatTail, pollUntil, portIsFree, stopLeftoverBroker, type ExitInfo } from './process-utils.js';

import type { MosquittoBrokerOptions } from './mosquitto-options.js';

export { findOnPath } from './process-utils.js';
export type { MosquittoBrokerOptions } from './mosquitto-options.js';

/**
 * Supervises Mosquitto as a child process (the production broker mode; the node's subscriber to it is
 * mosquitto-intake.ts). Emits 'up' when the broker accepts connections and 'down' (with a reason) when it dies; a
 * crashed broker is restarted with backoff. After crashLoopFailures failures within crashLoopWindowMs it gives up
 * and emits 'fatal' (a BROKER_CRASH_LOOP error).
 */
export class MosquittoBroker extends EventEmitter {
  readonly mode = 'mosquitto' as const;
  readonly confPath: string;
  readonly pidFile: string;
  private readonly dataDir: string;

  private readonly log: Logger;
  private readonly backoff: Backoff;
  private state: BrokerState = 'down';
  private detail: string | undefined = 'not started';
  private restarts = 0;
  private child: MosquittoChild | undefined;
  /** The last output lines of the current or last child. */
  private tail: string[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  private stableTimer: NodeJS.Timeout | undefined;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  /** Aborts start-up polls and the pre-start clean-up once stop() is called. */
  private readonly abort = new AbortController();
  private readonly sec: MosquittoSecurity;
  private readonly bm: BrokerMetrics;
  private readonly classifier = new MosquittoLogClassifier();
  private readonly crashLoop: CrashLoop;
  private probe: BrokerProbe | undefined;
  /** Why the current child was killed here (a hang), for the 'died' line that follows. */
  private killedFor: string | undefined;
  /** Set by closePublicListeners(): the conf on disk has the loopback listener only, for every later (re)start. */
  private loopbackOnly = false;
  /** Whether the running child was started on that conf. */
  private childLoopbackOnly = false;
  private closingPublic: Promise<void> | undefined;
  /** The crash loop ended the supervision: nothing restarts the child any more. */
  private gaveUp = false;

  constructor(private readonly opts: MosquittoBrokerOptions) {
    super();
    // DATA_DIR defaults to ./data: the conf and the leftover check need the absolute path.
    this.dataDir = path.resolve(opts.dataDir);
    const paths = mosquittoPaths(this.dataDir);
    this.confPath = paths.conf;
    this.pidFile = paths.pidFile;
    this.log = opts.logger.child({ component: 'broker', mode: 'mosquitto' });
    this.backoff = new Backoff({ baseMs: opts.restartBaseMs ?? 500, capMs: opts.restartCapMs ?? 30_000 });
    opts.metrics?.brokerUp.set(0);
    this.crashLoop = new CrashLoop(opts.crashLoopFailures, opts.crashLoopWindowMs);
    this.bm = brokerMetrics(opts.metrics ?? new Metrics({ defaultMetrics: false }));
    this.sec = new MosquittoSecurity({
      dir: paths.dir,
      security: opts.security ?? openPlaintext(opts.host, opts.port),
      ...(opts.clientId !== undefined ? { clientId: opts.clientId } : {}),
      logger: this.log,
      metrics: this.bm,
    });
  }

  start(): Promise<void> {
    this.starting ??= this.firstStart();
    return this.starting;
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  isUp(): boolean {
    return this.state === 'up';
  }

  status(): BrokerStatus {
    const s: BrokerStatus = { mode: this.mode, state: this.state, restarts: this.restarts, mqttVersions: OWN_BROKER_MQTT_VERSIONS };
    if (this.child?.pid !== undefined) s.pid = this.child.pid;
    if (this.detail !== undefined) s.detail = this.detail;
    else if (this.state === 'up' && this.childLoopbackOnly) s.detail = 'loopback listener only (mqtt-ingest leave): publishers are refused';
    return s;
  }

  /** The node's own loopback listener (available once start() has prepared it). */
  subscriberUrl(): string {
    return `mqtt://127.0.0.1:${this.sec.internalListenerPort}`;
  }

  /** The internal user and the subscriber's secret client id, for the node's subscriber only. */
  subscriberAuth(): SubscriberAuth {
    return this.sec.subscriberAuth();
  }

  /**
   * SIGHUP: checks the password file, ACL file and certificates, then has Mosquitto reload them; connected
   * clients whose credentials still pass stay connected. A bad file is reported and nothing is reloaded.
   */
  async reload(): Promise<void> {
    const child = this.child;
    if (!child || this.state !== 'up') {
      this.log.warn(withCode('BROKER_RELOAD_FAILED', { state: this.state }), 'mosquitto is not running; nothing to reload');
      return;
    }
    try {
      this.sec.checkForReload();
    } catch (err) {
      this.bm.reloads.inc({ result: 'failed' });
      this.log.error(withCode('BROKER_RELOAD_FAILED', { err: (err as Error).message }), 'reload refused; the previous users, ACL and certificates stay in force');
      throw err;
    }
    child.signal('SIGHUP');
    this.bm.reloads.inc({ result: 'ok' });
    this.log.info(withCode('BROKER_RELOADED'), 'mosquitto reloads the password file, ACL file and certificates (SIGHUP)');
  }

  private async firstStart(): Promise<void> {
    this.setState('starting', undefined);
    try {
      fs.mkdirSync(path.dirname(this.confPath), { recursive: true });
      await this.sec.prepare();
      await this.stopLeftover();
      // The loopback ports of the last start, unless another process took one (mosquitto-security.ts).
      await this.sec.settlePorts();
      this.writeConf();
      await this.launch();
    } catch (err) {
      const error =
        err instanceof BrokerError
          ? err
          : new BrokerError('BROKER_START_FAILED', `mosquitto could not start: ${String(err)}`, { cause: err });
      if (!this.stopping) this.setState('down', error.message);
      throw error;
    }
    this.markUp();
    await this.sec.startServices();
  }

  /** Renders mosquitto.conf; restarts after a crash launch it as it is, so a loopback-only conf stays in force. */
  private writeConf(): void {
    const conf = renderMosquittoConf({
      ...this.opts.conf,
      host: this.opts.host,
      port: this.opts.port,
      dataDir: this.dataDir,
      user: currentUser(),
      ...this.sec.confOptions(),
      loopbackOnly: this.loopbackOnly,
    });
    fs.writeFileSync(this.confPath, conf, { mode: 0o600 });
  }

  /**
   * `mqtt-ingest leave`: restarts Mosquitto with the loopback listener of the node's own clients only; the publishers
   * are disconnected and refused. SIGTERM makes Mosquitto save its database, which the new child loads (same file,
   * same loopback port): the subscriber's session and its queue survive. The conf stays loopback-only for restarts
   * after a crash. Resolves once such a child accepts connections; rejects when the broker is stopped or gives up.
   */
  closePublicListeners(): Promise<void> {
    this.closingPublic ??= this.restartLoopbackOnly();
    return this.closingPublic;
  }

  private async restartLoopbackOnly(): Promise<void> {
    this.loopbackOnly = true;
    this.writeConf();
    await this.sec.closePublic();
    for (;;) {
      if (this.stopping || this.gaveUp) {
        throw new BrokerError('BROKER_START_FAILED', `mosquitto was ${this.stopping ? 'stopped' : 'given up on'} before it ran with the loopback listener only`);
      }
      const child = this.child;
      if (this.state === 'up' && child && this.childLoopbackOnly) break;
      if (this.state === 'up' && child) {
        // A planned stop, not a crash: onChildClosed ignores a child that exits while the state is not 'up'.
        this.probe?.stop();
        clearTimeout(this.stableTimer);
        this.setState('starting', 'restarting with the loopback listener only (mqtt-ingest leave)');
        await child.stop(this.graceMs);
        await this.restart(false);
        continue;
      }
      // Down with a restart scheduled, or a restart under way: it launches the conf as now written.
      await pollUntil(() => this.state === 'up' || this.gaveUp, 60_000, { intervalMs: 100, signal: this.abort.signal });
    }
    this.log.info(
      withCode('BROKER_LOOPBACK_ONLY', { pid: this.child?.pid, url: this.subscriberUrl() }),
      'mosquitto runs with the loopback listener only: publishers are disconnected and refused (mqtt-ingest leave)',
    );
  }

  /** Stops a mosquitto left running by a SIGKILLed node on this DATA_DIR (process-utils.ts). */
  private async stopLeftover(): Promise<void> {
    const { pidFile, confPath } = this;
    if (!(await stopLeftoverBroker({ pidFile, confPath, graceMs: this.graceMs, log: this.log }))) return;
    // Its listening sockets close with the process; poll anyway so launch() does not race the kernel.
    const ports = this.sec.ports();
    await pollUntil(async () => (await Promise.all(ports.map((p) => portIsFree(p.host, p.port)))).every(Boolean), 5_000, {
      signal: this.abort.signal,
    });
  }

  /** Spawns the child and resolves when its port accepts connections; rejects when it exits first. */
  private async launch(): Promise<void> {
    this.checkNotStopped();
    await this.sec.checkPortsFree();
    const internalPort = this.sec.internalListenerPort;
    this.checkNotStopped();
    const child = this.spawnChild();
    let exited: ExitInfo | undefined;
    void child.closed.then((info) => (exited = info));

    const timeoutMs = this.opts.startTimeoutMs ?? 30_000;
    // "running" is written once every listener is open; the internal listener then takes connections.
    const ready = await pollUntil(
      async () => exited !== undefined || (child.running && !child.exited && (await canConnect('127.0.0.1', internalPort, 500))),
      timeoutMs,
      { signal: this.abort.signal },
    );
    if (ready && exited === undefined) return;
    // Not ready and still running: timed out, or stop() aborted the poll. Do not leave the child behind.
    const timedOut = exited === undefined && !this.stopping;
    if (exited === undefined) await child.stop(this.graceMs);
    const info = await child.closed;
    const why = this.stopping
      ? 'the broker was stopped during start-up'
      : timedOut
        ? `it did not accept connections within ${timeoutMs} ms`
        : exitReason(info);
    throw new BrokerError('BROKER_START_FAILED', `mosquitto failed to start: ${why}${formatTail(this.tail)}`, {
      cause: info.error,
      context: { ports: this.sec.ports(), bin: this.opts.bin, lastLines: [...this.tail] },
    });
  }

  private spawnChild(): MosquittoChild {
    const child = new MosquittoChild({
      bin: this.opts.bin,
      confPath: this.confPath,
      pidFile: this.pidFile,
      relay: this.opts.logger.child({ component: 'mosquitto' }),
      log: this.log,
      // The subscriber's client id is a secret (it guards its session): never relayed.
      redact: (line) => this.sec.redact(line),
      onLine: (line) => {
        const refused = this.classifier.classify(line);
        if (refused) this.bm.refused(refused);
      },
    });
    this.child = child;
    this.childLoopbackOnly = this.loopbackOnly;
    this.tail = child.tail;
    // Nothing may escape this chain as an unhandled rejection (cli/run.ts exits on one): a broken supervision step is logged.
    child.closed
      .then((info) => this.onChildClosed(child, info))
      .catch((err: Error) => this.log.error(withCode('BROKER_SUPERVISION_FAILED', { err: err.message }), 'mosquitto supervision failed after the broker exited'));
    return child;
  }

  private onChildClosed(child: MosquittoChild, info: ExitInfo): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.probe?.stop();
    const killedFor = this.killedFor;
    this.killedFor = undefined;
    child.removePidFile();
    clearTimeout(this.stableTimer);
    // During start-up launch() reports the exit; during stop() it is expected.
    if (this.state !== 'up' || this.stopping) return;
    const reason = killedFor ?? exitReason(info);
    this.log.error(withCode('BROKER_DIED', { lastLines: [...this.tail] }), killedFor ? `mosquitto was killed: ${reason}` : `mosquitto died unexpectedly: ${reason}`);
    this.setState('down', `died: ${reason}`);
    this.emit('down', reason);
    if (this.crashLooping(`died: ${reason}`)) return;
    this.scheduleRestart();
  }

  /** Records a failure; true (after emitting 'fatal') when there were too many in the window. */
  private crashLooping(reason: string): boolean {
    if (!this.crashLoop.record()) return false;
    const error = this.crashLoop.error(reason, this.tail);
    this.setState('down', error.message);
    this.gaveUp = true;
    this.log.fatal(withCode('BROKER_CRASH_LOOP', { lastLines: [...this.tail] }), error.message);
    this.emit('fatal', error);
    return true;
  }

  private scheduleRestart(): void {
    const delayMs = this.backoff.next();
    this.log.info({ delayMs, failures: this.backoff.failures }, 'restarting mosquitto after a delay');
    this.restartTimer = setTimeout(() => {
      this.restart().catch((err: Error) => this.log.error(withCode('BROKER_RESTART_FAILED', { err: err.message }), 'mosquitto restart failed'));
    }, delayMs);
  }

  /** `afterCrash` false: the planned restart of closePublicListeners(), not counted as a restart after a death. */
  private async restart(afterCrash = true): Promise<void> {
    if (this.stopping) return;
    if (afterCrash) {
      this.restarts += 1;
      this.opts.metrics?.brokerRestarts.inc();
      this.setState('starting', `restart ${this.restarts}`);
    }
    try {
      await this.launch();
    } catch (err) {
      if (this.stopping) return;
      this.log.error(withCode('BROKER_RESTART_FAILED', { err, failures: this.backoff.failures }), 'mosquitto restart failed');
      this.setState('down', (err as Error).message);
      if (this.crashLooping((err as Error).message)) return;
      this.scheduleRestart();
      return;
    }
    this.markUp();
  }

  private markUp(): void {
    if (this.stopping) return;
    this.setState('up', undefined);
    this.log.info(withCode('BROKER_LISTENING', { pid: this.child?.pid, url: this.subscriberUrl() }), 'mosquitto accepts connections');
    // Reset the backoff only after a stable period, so a broker that dies right after start-up backs off.
    clearTimeout(this.stableTimer);
    this.stableTimer = setTimeout(() => this.backoff.reset(), this.opts.stableAfterMs ?? 30_000);
    this.stableTimer.unref();
    this.startProbe();
    this.emit('up');
  }

  /**
   * A child that stops answering (SIGSTOP, a stuck disk) keeps its sockets open and never exits, so nothing
   * else would notice: the probe does, and the child is killed, which the supervision then restarts as after a
   * crash, counting towards the crash loop (whose end fails liveness, so the platform restarts the node).
   */
  private startProbe(): void {
    this.probe?.stop();
    const child = this.child;
    const auth = this.sec.subscriberAuth();
    this.probe = new BrokerProbe({
      host: '127.0.0.1',
      port: this.sec.internalListenerPort,
      username: auth.username,
      password: auth.password,
      ...this.opts.probe,
      logger: this.log,
      onHung: (why) => {
        if (this.child !== child || !child || this.stopping) return;
        this.killedFor = `hung: ${why}`;
        this.log.error(withCode('BROKER_UNRESPONSIVE', { pid: child.pid }), `mosquitto does not answer: ${why}; killing it (SIGKILL) so that it is restarted`);
        child.signal('SIGKILL');
      },
    });
    this.probe.start();
  }

  private async shutdown(): Promise<void> {
    this.abort.abort();
    this.probe?.stop();
    clearTimeout(this.restartTimer);
    clearTimeout(this.stableTimer);
    await this.sec.stopServices();
    await this.child?.stop(this.graceMs);
    // A start() in flight finishes (rejecting) before the state settles on 'stopped'.
    await this.starting?.catch(() => undefined);
    fs.rmSync(this.pidFile, { force: true });
    this.setState('stopped', undefined);
    this.log.info('mosquitto stopped');
  }

  /** Time between SIGTERM and SIGKILL when the child is stopped. */
  private get graceMs(): number {
    return this.opts.stopGraceMs ?? 5_000;
  }

  private checkNotStopped(): void {
    if (this.stopping) {
      throw new BrokerError('BROKER_START_FAILED', 'mosquitto failed to start: the broker was stopped during start-up');
    }
  }

  private setState(state: BrokerState, detail: string | undefined): void {
    this.state = state;
    this.detail = detail;
    this.opts.metrics?.brokerUp.set(state === 'up' ? 1 : 0);
  }
}
