/**
 * Runs broker-load.js as a child process and talks to it (commands on its stdin, JSON reports on its stdout).
 * The child starts through `sh` with its soft open-file limit raised to the hard one, so that thousands of client
 * sockets fit; the limit it got is in its `connected` report.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'broker-load.js');

/** Load processes still running: killed when the bench exits, whatever happened. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const proc of running) proc.kill('SIGKILL');
});

export type LoadReport = Record<string, unknown> & { event: string };

export interface LoadProcess {
  pid: number;
  /** The next report with this event; rejects on an `error` report or the process's exit. */
  next(event: string, timeoutMs?: number): Promise<LoadReport>;
  send(command: 'go' | 'end'): void;
  /** `end`, then waits for the exit (SIGKILL after 10 s); the `ended` report, if it came. */
  stop(): Promise<LoadReport | undefined>;
}

export function startLoad(args: Record<string, string | number>): LoadProcess {
  const argv = Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const proc = spawn('sh', ['-c', 'ulimit -S -n "$(ulimit -H -n)" 2>/dev/null; exec "$0" "$@"', process.execPath, script, ...argv], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  running.add(proc);
  const reports: LoadReport[] = [];
  const waiters: Array<() => void> = [];
  let exited = false;
  const wake = () => waiters.splice(0).forEach((w) => w());
  let buffer = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buffer += d.toString();
    let i;
    while ((i = buffer.indexOf('\n')) >= 0) {
      reports.push(JSON.parse(buffer.slice(0, i)) as LoadReport);
      buffer = buffer.slice(i + 1);
    }
    wake();
  });
  const exit = new Promise<void>((resolve) =>
    proc.on('exit', () => {
      exited = true;
      running.delete(proc);
      wake();
      resolve();
    }),
  );
  const next = (event: string, timeoutMs = 600_000): Promise<LoadReport> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`load ${args.mode}: no ${event} report within ${timeoutMs} ms`)), timeoutMs);
      const look = () => {
        const i = reports.findIndex((r) => r.event === event || r.event === 'error');
        if (i >= 0) {
          const [r] = reports.splice(i, 1);
          clearTimeout(timer);
          return r.event === 'error' ? reject(new Error(`load ${args.mode}: ${String(r.message)}`)) : resolve(r);
        }
        if (exited) {
          clearTimeout(timer);
          return reject(new Error(`load ${args.mode} exited (${proc.exitCode ?? proc.signalCode}) before ${event}`));
        }
        waiters.push(look);
      };
      look();
    });
  return {
    pid: proc.pid as number,
    next,
    send: (command) => {
      if (!exited) proc.stdin!.write(command + '\n');
    },
    async stop() {
      if (exited) return reports.find((r) => r.event === 'ended');
      proc.stdin!.write('end\n');
      const killer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(killer);
      return reports.find((r) => r.event === 'ended');
    },
  };
}
