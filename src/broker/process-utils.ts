import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { sleep } from '../core/clock.js';

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
