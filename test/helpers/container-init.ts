import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { findOnPath } from '../../src/intake/mosquitto/process-utils.js';
import { isRoot } from './disk.js';
import { BIN, ROOT } from './node-process.js';

/**
 * The node started as the image starts it (Dockerfile: ENTRYPOINT tini, CMD `node bin/mqtt-ingest.js run`), with
 * tini as PID 1 of a PID namespace of its own, as a container runtime gives it: when PID 1 exits, the kernel
 * SIGKILLs every other process of the namespace (pid_namespaces(7)). Needs root, unshare(1) and tini.
 */
export interface ContainerProcess {
  /** The unshare process, in this test's namespace; it exits with tini's status. */
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL of the whole process group (cleanup). */
  kill(): Promise<void>;
}

export function canRunAsContainer(): boolean {
  return isRoot && findOnPath('unshare') !== undefined && findOnPath('tini') !== undefined;
}

export function startAsContainer(env: NodeJS.ProcessEnv): ContainerProcess {
  const argv = ['--pid', '--fork', '--mount-proc', findOnPath('tini')!, '--', process.execPath, BIN, 'run'];
  const proc = spawn(findOnPath('unshare')!, argv, { env, cwd: ROOT, stdio: 'ignore', detached: true });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    proc,
    exited,
    kill: async () => {
      try {
        process.kill(-(proc.pid as number), 'SIGKILL');
      } catch {
        // the group is gone already
      }
      if (proc.exitCode === null && proc.signalCode === null) await exited;
    },
  };
}

/** The children of `pid` (pids as this test sees them), from /proc/<n>/stat. */
export function childPids(pid: number): number[] {
  return fs.readdirSync('/proc').flatMap((p) => {
    if (!/^\d+$/.test(p)) return [];
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return ppid === pid ? [Number(p)] : [];
    } catch {
      return [];
    }
  });
}
