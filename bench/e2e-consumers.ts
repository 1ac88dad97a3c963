/**
 * The end-to-end case's baselines as child processes, each with its CPU readable from /proc: the non-durable
 * bridge (bridge.ts) and `mosquitto_sub` to /dev/null.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, mosquittoTool, nowMs, treeCpuSeconds } from './lib.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** A consumer during a pass: its CPU so far, and when it has taken `count` messages to the end of its pipeline. */
export interface Pass {
  /** CPU seconds (user + system) of the consumer's processes so far. */
  cpu(): number;
  /**
   * Resolves with the time (nowMs) at which the consumer had `count` messages through; `fast`: from this many on,
   * look more often (where the consumer is polled).
   */
  until(count: number, fast?: number): Promise<number>;
  /** Figures of the consumer's own, read before the publishers start and at the end (the pass keeps the differences). */
  sample?(): Promise<Record<string, number>>;
}

/** Children still running: killed when the bench exits, whatever happened. */
const running = new Set<import('node:child_process').ChildProcess>();
process.on('exit', () => {
  for (const proc of running) proc.kill('SIGKILL');
});

export interface BridgeOptions {
  url: string;
  filter: string;
  clientId: string;
  host: string;
  project: string;
  topic: string;
  /** Counts of Pub/Sub-acknowledged messages to report. */
  marks: number[];
  env: Record<string, string | undefined>;
}

/** Starts bridge.js and resolves once it is subscribed and its Publish client is ready. */
export async function startBridge(o: BridgeOptions): Promise<Pass & { stop(): Promise<void> }> {
  const args = ['--url', o.url, '--filter', o.filter, '--client-id', o.clientId, '--host', o.host, '--project', o.project, '--topic', o.topic, '--marks', o.marks.join(',')];
  const proc = spawn(process.execPath, [path.join(here, 'bridge.js'), ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, METADATA_SERVER_DETECTION: 'none', ...o.env },
  });
  running.add(proc);
  const reached = new Map<number, number>();
  const waiters: (() => void)[] = [];
  let ready = false;
  let failure: string | undefined;
  let exited = false;
  const wake = () => waiters.splice(0).forEach((w) => w());
  let buffer = '';
  proc.stdout!.on('data', (d: Buffer) => {
    const t = nowMs();
    buffer += d.toString();
    let i;
    while ((i = buffer.indexOf('\n')) >= 0) {
      const r = JSON.parse(buffer.slice(0, i)) as { event: string; mark?: number; message?: string };
      buffer = buffer.slice(i + 1);
      if (r.event === 'ready') ready = true;
      if (r.event === 'reached') reached.set(r.mark!, t);
      if (r.event === 'error') failure = r.message;
    }
    wake();
  });
  const exit = new Promise<void>((resolve) =>
    proc.on('exit', (code) => {
      exited = true;
      running.delete(proc);
      failure ??= `exited with ${code}`;
      wake();
      resolve();
    }),
  );
  const wait = (done: () => boolean, what: string, timeoutMs = 600_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the e2e bridge: no ${what} within ${timeoutMs} ms`)), timeoutMs);
      const look = () => {
        if (done()) {
          clearTimeout(timer);
          return resolve();
        }
        if (failure !== undefined) {
          clearTimeout(timer);
          return reject(new Error(`the e2e bridge failed before ${what}: ${failure}`));
        }
        waiters.push(look);
      };
      look();
    });
  await wait(() => ready, 'ready', 30_000);
  return {
    cpu: () => cpuSeconds(proc.pid!),
    until: async (count) => {
      await wait(() => reached.has(count), `${count} acknowledged`);
      return reached.get(count)!;
    },
    async stop() {
      if (exited) return;
      proc.stdin!.end('end\n');
      const killer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(killer);
    },
  };
}

/**
 * `mosquitto_sub -q 1 -c -i <id>` on an existing session, output to /dev/null, until `total` messages (`-C`). It runs
 * under `sh`, which writes its own /proc stat to fd 3 after mosquitto_sub has exited, so its CPU to the end is known.
 * Its output is not read, so it cannot say when it has taken a count short of `total`: `until` a smaller count
 * (the warm-up, published before it is called) waits 500 ms; `until(total)` resolves at its exit.
 */
export function startMosquittoSub(port: number, filter: string, clientId: string, total: number): Pass & { stop(): void } {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-c', '-i', clientId, '-t', filter, '-C', String(total)];
  const script = '"$0" "$@" > /dev/null; code=$?; cat /proc/$$/stat >&3; exit $code';
  const proc = spawn('sh', ['-c', script, mosquittoTool('mosquitto_sub'), ...args], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'] });
  running.add(proc);
  let stat = '';
  let exitedAt = 0;
  proc.stdio[3]!.on('data', (d) => (stat += d));
  proc.on('exit', () => (exitedAt = nowMs()));
  const closed = new Promise<number>((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (code) => {
      running.delete(proc);
      if (code !== 0) reject(new Error(`mosquitto_sub exited with ${code}`));
      else resolve(exitedAt);
    });
  });
  closed.catch(() => undefined); // awaited in until()
  const finalCpu = () => {
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  };
  return {
    cpu: () => (stat ? finalCpu() : treeCpuSeconds(proc.pid!)),
    until: async (count) => {
      if (count < total) {
        await new Promise((r) => setTimeout(r, 500));
        return nowMs();
      }
      return closed;
    },
    stop: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}
