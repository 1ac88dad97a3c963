import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNode, type NodeProcess } from '../test/helpers/node-process.js';
import { mosquittoBin } from '../test/helpers/mosquitto.js';

export { startNode, type NodeProcess };

/** A ~200-byte JSON payload like a pressure sensor's; `sent` is the publisher's high-resolution clock. */
export function benchPayload(seq: number, sent = 0): string {
  const base = { seq, sent, sensor: `PT-${String(seq % 64).padStart(3, '0')}`, bar: Number((1.2 + (seq % 1000) / 1000).toFixed(3)), unit: 'bar', site: 'pit-north' };
  const text = JSON.stringify(base);
  return JSON.stringify({ ...base, pad: 'x'.repeat(Math.max(0, 200 - text.length - 10)) });
}

/** Milliseconds on a clock shared by every part of the bench process (sub-millisecond resolution). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `bench-${prefix}-`));
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Polls one counter of the node (GET /metrics?name=…) until `done(value)`; returns the poll timeline. */
export async function pollCounter(
  node: NodeProcess,
  name: string,
  done: (v: number) => boolean,
  opts: { intervalMs?: number; timeoutMs?: number; labels?: string } = {},
): Promise<{ t: number; v: number }[]> {
  const timeline: { t: number; v: number }[] = [];
  const deadline = Date.now() + (opts.timeoutMs ?? 600_000);
  for (;;) {
    const v = await readCounter(node, name, opts.labels);
    timeline.push({ t: nowMs(), v });
    if (done(v)) return timeline;
    // A node that could not start (a bad flag, a config error) fails the case at once instead of at the deadline.
    if (node.proc.exitCode !== null || node.proc.signalCode !== null) {
      throw new Error(`the node exited (${node.proc.exitCode ?? node.proc.signalCode}) while ${name} was ${v}:\n${node.logs.slice(-10).join('\n')}`);
    }
    if (Date.now() > deadline) throw new Error(`${name} stuck at ${v} (timeout)`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}

export async function readCounter(node: NodeProcess, name: string, labels?: string): Promise<number> {
  let text: string;
  try {
    text = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics?name=${name}`)).text();
  } catch {
    return 0; // the node's HTTP server is not listening yet
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (labels && !line.includes(labels))) continue;
    return Number(line.split(' ').pop());
  }
  return 0;
}

/** Rate between the first poll that saw progress and the poll that saw the end. */
export function rateFromTimeline(timeline: { t: number; v: number }[], total: number): { rate: number; seconds: number } {
  const first = timeline.find((p) => p.v > 0) ?? timeline[0];
  const last = timeline[timeline.length - 1];
  const seconds = Math.max(1e-3, (last.t - first.t) / 1000);
  return { rate: (total - first.v) / seconds, seconds };
}

/** Resolves when a log line of the node matching `message` has been printed; returns when it was seen. */
export async function waitForLog(node: NodeProcess, message: string, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (node.logs.some((l) => l.includes(`"message":"${message}"`))) return nowMs();
    if (Date.now() > deadline) throw new Error(`node never logged "${message}"`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat (fields 14 and 15, in clock
 * ticks of 1/100 s on Linux), or NaN when it is gone.
 */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count the fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** A process and every process below it (the node and its supervised Mosquitto), from the parent pids in /proc. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // gone since the listing
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  return tree;
}

/** CPU seconds of a process and its descendants alive now (see cpuSeconds). */
export function treeCpuSeconds(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + (cpuSeconds(p) || 0), 0);
}

/** The soft limit on open files of a running process, from /proc/<pid>/limits. */
export function openFilesLimit(pid: number): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : NaN;
}

/** Peak resident memory (MB) of a process from /proc, sampled by the caller. */
export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** The path of a Mosquitto client tool, found beside the broker first. */
export function mosquittoTool(name: 'mosquitto_pub' | 'mosquitto_sub'): string {
  const bin = mosquittoBin();
  const candidates = [bin ? path.join(path.dirname(bin), name) : '', `/usr/bin/${name}`, name];
  for (const c of candidates) {
    try {
      if (c && readFileSync(c).length > 0) return c;
    } catch {
      // try the next place
    }
  }
  return name;
}

/**
 * Publishes messages with `mosquitto_pub -l -q 1`, in runs of at most 50,000 lines: mosquitto_pub 2.0.11
 * exits 0 yet loses messages when one run sends more than 65,535 (its packet ids wrap).
 */
export async function mosquittoPublish(port: number, topic: string, from: number, to: number): Promise<void> {
  const dir = tempDir('pub');
  try {
    for (let start = from; start < to; start += 50_000) {
      const end = Math.min(to, start + 50_000);
      const file = path.join(dir, 'lines.txt');
      const lines: string[] = [];
      for (let i = start; i < end; i++) lines.push(benchPayload(i));
      writeFileSync(file, lines.join('\n') + '\n');
      await runToExit(spawn('sh', ['-c', `${mosquittoTool('mosquitto_pub')} -h 127.0.0.1 -p ${port} -q 1 -t ${topic} -l < ${file}`], { stdio: 'inherit' }));
    }
  } finally {
    cleanup(dir);
  }
}

/** Creates (or refreshes) a persistent QoS 1 session for `clientId`, so messages queue for it from now on. */
export async function mosquittoSession(port: number, topicFilter: string, clientId: string): Promise<void> {
  const code = await runToExit(
    spawn(mosquittoTool('mosquitto_sub'), ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-c', '-i', clientId, '-t', topicFilter, '-E'], { stdio: 'inherit' }),
  );
  if (code !== 0) throw new Error(`mosquitto_sub -E exited with ${code}`);
}

/**
 * `mosquitto_sub -q 1 -c` on an existing session as the baseline, until it has received `count` messages.
 * With `timestamps`, its output is read line by line to time the first and the last message; without,
 * the output goes to /dev/null and only the process's start and exit are timed (the cheapest reader).
 */
export function mosquittoSubscribe(
  port: number,
  topicFilter: string,
  count: number,
  clientId: string,
  timestamps: boolean,
): Promise<{ started: number; first: number; last: number; ended: number; received: number }> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-c', '-i', clientId, '-t', topicFilter, '-C', String(count)];
  const started = nowMs();
  const proc = spawn(mosquittoTool('mosquitto_sub'), args, { stdio: ['ignore', timestamps ? 'pipe' : 'ignore', 'inherit'] });
  let received = 0;
  let first = 0;
  let last = 0;
  proc.stdout?.on('data', (chunk: Buffer) => {
    const t = nowMs();
    let lines = 0;
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines += 1;
    if (lines > 0 && received === 0) first = t;
    if (lines > 0) last = t;
    received += lines;
  });
  return runToExit(proc).then(() => ({ started, first, last, ended: nowMs(), received: timestamps ? received : count }));
}

export function runToExit(proc: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code) => resolve(code ?? -1));
  });
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The processes whose command line holds `arg` (one argument, exactly), e.g. the emulator's `--port=…`. */
export function processesWithArg(arg: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').includes(arg)) found.push(Number(name));
    } catch {
      // gone since the listing
    }
  }
  return found;
}
