import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { sleep } from '../../core/clock.js';
import { withCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { relayLevel } from './mosquitto-log.js';
import type { ExitInfo } from './process-utils.js';

/** Lines of Mosquitto's own output kept for error messages ("Error: Address already in use"). */
const TAIL_LINES = 20;

export interface MosquittoChildOptions {
  bin: string;
  confPath: string;
  pidFile: string;
  /** Mosquitto's output is relayed here, line by line, at the level each line calls for (mosquitto-log.ts). */
  relay: Logger;
  /** The broker's own log, for the 'mosquitto started' line and pid file problems. */
  log: Logger;
  /** Each output line before it is kept or relayed (the secret client id suffix removed). */
  redact: (line: string) => string;
  /** Each output line after redaction, to count refusals. */
  onLine: (line: string) => void;
}

/**
 * One run of the mosquitto binary: spawned with the rendered conf, its output relayed and the last lines kept,
 * its pid in the pid file while it runs. Mosquitto writes its pid_file only when daemonised (-d), which would
 * take it out of supervision, so the node writes it (for stopLeftoverBroker after a SIGKILL of the node).
 */
export class MosquittoChild {
  readonly process: ChildProcess;
  /** Settles once the child has exited and its output is drained. */
  readonly closed: Promise<ExitInfo>;
  /** The last lines of its output. */
  readonly tail: string[] = [];
  /** Set once it wrote "mosquitto version … running": every listener is open. */
  running = false;

  constructor(private readonly opts: MosquittoChildOptions) {
    // Not detached: a signal to the node's process group (Ctrl-C, a container stop) reaches the broker too.
    const child = spawn(opts.bin, ['-c', opts.confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.process = child;
    // If the node exits without stop() (an uncaught exception, process.exit), do not orphan the broker.
    // Only a SIGKILL of the node escapes this; stopLeftover() handles that case at the next start.
    const killOnExit = () => child.kill('SIGTERM');
    process.once('exit', killOnExit);
    child.once('close', () => process.removeListener('exit', killOnExit));
    // A binary that cannot be run emits 'error' (then 'close'); without a listener it would crash the node.
    let spawnError: Error | undefined;
    child.on('error', (err) => (spawnError ??= err));
    // 'close' (not 'exit') fires after stdout/stderr are drained, so the last lines are in the tail.
    this.closed = new Promise((resolve) =>
      child.once('close', (code: number | null, signal: NodeJS.Signals | null) =>
        resolve({ code, signal, ...(spawnError ? { error: spawnError } : {}) }),
      ),
    );
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (raw) => {
        const line = opts.redact(raw);
        this.tail.push(line);
        if (this.tail.length > TAIL_LINES) this.tail.shift();
        if (/^mosquitto version \S+ running$/.test(line)) this.running = true;
        opts.onLine(line);
        opts.relay[relayLevel(line)](line);
      });
    }
    if (child.pid !== undefined) {
      fs.writeFileSync(opts.pidFile, `${child.pid}\n`);
      opts.log.info({ pid: child.pid, conf: opts.confPath }, 'mosquitto started');
    }
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get exited(): boolean {
    return this.process.exitCode !== null || this.process.signalCode !== null;
  }

  signal(signal: NodeJS.Signals): void {
    this.process.kill(signal);
  }

  /** SIGTERM (Mosquitto saves its database), SIGKILL after `graceMs`; resolves once it is gone. */
  async stop(graceMs: number): Promise<void> {
    if (this.exited) {
      await this.closed;
      return;
    }
    this.process.kill('SIGTERM');
    // The grace timer is cleared as soon as the child exits: a pending one would keep the process alive.
    const grace = new AbortController();
    const timedOut = await Promise.race([this.closed.then(() => false), sleep(graceMs, grace.signal).then(() => !grace.signal.aborted)]);
    grace.abort();
    if (timedOut) {
      this.opts.log.warn(withCode('BROKER_FORCE_KILLED', { pid: this.pid, graceMs }), 'mosquitto ignored SIGTERM; sending SIGKILL');
      this.process.kill('SIGKILL');
      await this.closed;
    }
  }

  /**
   * Removes the pid file once the child exited. A file that cannot be removed is only a warning: the next start
   * checks the pid in it against /proc before it acts on it (process-utils.ts stopLeftoverBroker).
   */
  removePidFile(): void {
    try {
      fs.rmSync(this.opts.pidFile, { force: true });
    } catch (err) {
      this.opts.log.warn(withCode('BROKER_PID_FILE_FAILED', { err: (err as Error).message, pidFile: this.opts.pidFile }), 'cannot remove the mosquitto pid file');
    }
  }
}
