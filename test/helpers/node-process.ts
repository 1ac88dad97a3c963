import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './ports.js';

/** The package root, found by walking up (this file also runs compiled, from dist/test/helpers, in the bench). */
function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) || !existsSync(path.join(dir, 'bin', 'mqtt-ingest.js'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the mqtt-ingest package root');
    dir = up;
  }
  return dir;
}
export const ROOT = findRoot();
export const BIN = path.join(ROOT, 'bin', 'mqtt-ingest.js');

export interface NodeProcess {
  proc: ChildProcess;
  httpPort: number;
  mqttPort: number;
  dataDir: string;
  logs: string[];
  /** Parsed JSON log lines. */
  logObjects(): Record<string, unknown>[];
  readiness(): Promise<{ status: number; body: Record<string, unknown> }>;
  metrics(): Promise<string>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  waitReady(timeoutMs?: number): Promise<void>;
  /** SIGTERM, then wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  /**
   * SIGKILL the node and everything it started (its process group), as when a container is killed, and
   * wait for the node to exit. Tests use it both to crash the node and to clean up.
   */
  kill(): Promise<void>;
  /** SIGKILL the node process alone, leaving its children (a supervised Mosquitto) running as orphans. */
  killNodeOnly(): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Process groups of nodes still running: killed when the test process exits, whatever happened. */
const groups = new Set<number>();
/** DATA_DIRs that startNode made itself: removed when the test process exits (tests read them until then). */
const madeDirs = new Set<string>();
process.on('exit', () => {
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of madeDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // a mount point a test left, or a file still held: left for the OS
    }
  }
});

/** The base environment of a node under test: quiet, no metadata-server probing, no inherited config. */
export function baseEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, METADATA_SERVER_DETECTION: 'none', LOG_LEVEL: 'info' };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Runs `mqtt-ingest <args>` to completion and returns its exit code and output. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, ...args], { env, cwd: ROOT });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`mqtt-ingest ${args.join(' ')} did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Starts the node as a real child process (`mqtt-ingest run`) on free ports. `env` adds to or
 * overrides the defaults (embedded broker unless MQTT_BROKER_MODE says otherwise).
 */
export async function startNode(env: Record<string, string | undefined> = {}, opts: { dataDir?: string; mqttPort?: number; httpPort?: number } = {}): Promise<NodeProcess> {
  const dataDir = opts.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-node-'));
  if (opts.dataDir === undefined) madeDirs.add(dataDir);
  const httpPort = opts.httpPort ?? (await freePort());
  const mqttPort = opts.mqttPort ?? (await freePort());
  const fullEnv = baseEnv({ DATA_DIR: dataDir, PORT: String(httpPort), MQTT_PORT: String(mqttPort), MQTT_HOST: '127.0.0.1', ...env });
  // BENCH_NODE_ARGS: extra Node.js flags for profiling (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // Its own process group, so kill() can take the supervised Mosquitto down with it.
  const proc = spawn(process.execPath, [...nodeArgs, BIN, 'run'], { env: fullEnv, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  groups.add(proc.pid as number);
  const logs: string[] = [];
  let buffer = '';
  const onData = (d: Buffer) => {
    buffer += d.toString();
    let i;
    while ((i = buffer.indexOf('\n')) >= 0) {
      logs.push(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
    }
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const killGroup = () => {
    try {
      process.kill(-(proc.pid as number), 'SIGKILL');
    } catch {
      // the group is gone already
    }
    groups.delete(proc.pid as number);
  };
  const base = `http://127.0.0.1:${httpPort}`;
  const node: NodeProcess = {
    proc,
    httpPort,
    mqttPort,
    dataDir,
    logs,
    exited,
    logObjects: () =>
      logs.flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
    async readiness() {
      const res = await fetch(`${base}/readyz`);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
    async metrics() {
      return (await fetch(`${base}/metrics`)).text();
    },
    async metric(name, labels = {}) {
      const text = await node.metrics();
      const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      for (const line of text.split('\n')) {
        if (!line.startsWith(name)) continue;
        const rest = line.slice(name.length);
        if (rest[0] !== ' ' && rest[0] !== '{') continue;
        if (want.every((w) => rest.includes(w))) return Number(line.split(' ').pop());
      }
      return 0;
    },
    async waitReady(timeoutMs = 30_000) {
      await waitFor(
        async () => {
          if (proc.exitCode !== null) throw new Error(`node exited with ${proc.exitCode}:\n${logs.slice(-20).join('\n')}`);
          return (await node.readiness()).status === 200;
        },
        timeoutMs,
        `node ready on ${base}\n${logs.slice(-10).join('\n')}`,
      );
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const r = await exited;
      return r.code;
    },
    async kill() {
      killGroup();
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      await exited;
    },
    async killNodeOnly() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
  return node;
}
