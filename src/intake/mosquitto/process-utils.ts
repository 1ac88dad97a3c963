import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sleep } from '../../core/clock.js';
import { BrokerError, withCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';

/**
 * Small helpers for supervising a broker process: finding the binary, probing ports, and stopping a
 * process we only know by pid (one left behind by a node that was SIGKILLed, so not our child).
 */

// Debian and Ubuntu install mosquitto in /usr/sbin, which is not on a non-root user's PATH there; auto
// mode would otherwise fall back to the embedded broker on a machine that has Mosquitto installed.
const SBIN_FALLBACKS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** The absolute path of an executable `bin` (a name looked up on PATH, then in the sbin dirs, or a path). */
export function findOnPath(bin: string, pathEnv = process.env.PATH ?? ''): string | undefined {
  if (bin.length === 0) return undefined;
  const candidates = bin.includes('/')
    ? [path.resolve(bin)]
    : [...pathEnv.split(path.delimiter).filter(Boolean), ...SBIN_FALLBACKS].map((dir) => path.join(dir, bin));
  return candidates.find(isExecutableFile);
}

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** True while `pid` names a live process. A zombie (exited, not yet reaped) counts as gone. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...": the state follows the last ')' since comm may contain one.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    // No /proc (not Linux): kill(0) already said it exists.
    return true;
  }
}

/** The argv of a process from /proc/<pid>/cmdline, or undefined when it cannot be read. */
export function processArgv(pid: number): string[] | undefined {
  try {
    const raw = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((arg, i, all) => !(i === all.length - 1 && arg === ''));
  } catch {
    return undefined;
  }
}

/** Polls `check` every `intervalMs` until it is true (→ true), the timeout passes or the signal aborts (→ false). */
export async function pollUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  { intervalMs = 50, signal }: { intervalMs?: number; signal?: AbortSignal } = {},
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (signal?.aborted) return false;
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs, signal);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves true once the process is gone. */
export async function terminatePid(pid: number, graceMs: number): Promise<boolean> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  };
  signal('SIGTERM');
  if (await pollUntil(() => !pidAlive(pid), graceMs)) return true;
  signal('SIGKILL');
  return pollUntil(() => !pidAlive(pid), 5_000);
}

/** True when a TCP connection to host:port is accepted within `timeoutMs`. */
export function canConnect(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * True unless another socket listens on host:port (a bind probe answers EADDRINUSE). Other bind errors
 * (EACCES below 1024, an address not on this machine) answer true: the broker reports those itself.
 */
export function portIsFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'EADDRINUSE'));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A loopback port that was free a moment ago, for a listener only the node uses (the broker binds it itself, so
 * port 0 is not an option). Another process may take it in between; the broker then fails to start and says so.
 */
export function pickLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The node's user name for the conf's `user` line. os.userInfo() throws for a uid without a passwd entry
 * (arbitrary-uid containers); such a process is not root, and Mosquitto reads `user` only when root.
 */
export function currentUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'mosquitto';
  }
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the binary could not be run at all (ENOENT, EACCES). */
  error?: Error;
}

export function exitReason({ code, signal, error }: ExitInfo): string {
  if (error) return `could not run it: ${error.message}`;
  if (signal) return `killed by ${signal}`;
  // Mosquitto exits 3 on a bad config file and 1 when it cannot open a listener.
  return `exited with status ${code}`;
}

export function formatTail(tail: string[]): string {
  return tail.length === 0 ? '' : `; its last output:\n  ${tail.join('\n  ')}`;
}

/**
 * A node that was SIGKILLed cannot stop its child, which keeps the ports and the database. Its pid file names
 * it; stop it when that pid is still a mosquitto running our conf (the pid may have been reused). True when a
 * leftover was stopped.
 */
export async function stopLeftoverBroker(o: { pidFile: string; confPath: string; graceMs: number; log: Logger }): Promise<boolean> {
  let pid: number;
  try {
    pid = Number.parseInt(fs.readFileSync(o.pidFile, 'utf8').trim(), 10);
  } catch {
    return false; // no pid file: a clean previous stop, or a first start
  }
  const argv = Number.isInteger(pid) && pid > 0 && pidAlive(pid) ? processArgv(pid) : undefined;
  const ours = argv !== undefined && path.basename(argv[0] ?? '').startsWith('mosquitto') && argv.includes(o.confPath);
  if (!ours) {
    o.log.info({ pid, argv }, 'ignoring a stale mosquitto pid file: that process is gone or is not ours');
    fs.rmSync(o.pidFile, { force: true });
    return false;
  }
  o.log.warn(withCode('BROKER_LEFTOVER', { pid }), 'stopping a mosquitto left running by a previous node on the same DATA_DIR');
  if (!(await terminatePid(pid, o.graceMs))) {
    throw new BrokerError('BROKER_START_FAILED', `a leftover mosquitto (pid ${pid}) survived SIGKILL`, { context: { pid } });
  }
  fs.rmSync(o.pidFile, { force: true });
  return true;
}
