import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { mosquittoPaths, renderMosquittoConf, type MosquittoConfOptions } from '../../src/intake/mosquitto/mosquitto-conf.js';
import { canConnect, pollUntil } from '../../src/intake/mosquitto/process-utils.js';
import { mosquittoBin } from './mosquitto.js';
import { freePort, waitFor } from './ports.js';

/**
 * Mosquitto's database as a test sees it. Mosquitto writes its whole in-memory state at each autosave and at a
 * clean exit, to a new file renamed over the old one; between saves the file does not change. A version of the file
 * (inode and modification time) therefore names one save, and a test can tell whether a save came between two
 * instants: what a SIGKILLed Mosquitto had in memory only is gone.
 */
export function dbVersion(db: string): string | undefined {
  try {
    const s = fs.statSync(db);
    return `${s.ino}:${s.mtimeMs}`;
  } catch {
    return undefined;
  }
}

/** Resolves with the new version of `db` once Mosquitto has saved it again (polled every 50 ms). */
export function nextSave(db: string, timeoutMs = 15_000): Promise<string> {
  const before = dbVersion(db);
  return waitFor(
    () => {
      const v = dbVersion(db);
      return v !== undefined && v !== before ? v : undefined;
    },
    timeoutMs,
    `a save of ${db}`,
  );
}

/** A Mosquitto of the test's own, with the conf the node renders for its supervised broker and the given options. */
export interface ConfMosquitto {
  port: number;
  url: string;
  /** Its database file. */
  db: string;
  /** SIGKILL, as a crash, and wait until it is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port, conf and database. */
  start(): Promise<void>;
  /** SIGTERM (it saves its database), wait, and remove its files: the end of it. */
  stop(): Promise<void>;
  /** The last value Mosquitto published on a `$SYS` topic (retained), or undefined within 3 s. */
  sys(topic: string): Promise<number | undefined>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

export type ConfOptions = Omit<MosquittoConfOptions, 'host' | 'port' | 'dataDir' | 'user' | 'security'> & {
  /** An ACL for anonymous clients: rendered with the node's listener settings (per_listener_settings). */
  aclFile?: string;
};

export async function startConfMosquitto(opts: ConfOptions = {}): Promise<ConfMosquitto> {
  const bin = mosquittoBin();
  if (!bin) throw new Error('mosquitto not found on PATH (apt-get install mosquitto)');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-conf-mosquitto-'));
  const port = await freePort();
  const { aclFile, ...conf } = opts;
  const { dir, db } = mosquittoPaths(dataDir);
  fs.mkdirSync(dir, { recursive: true });
  const confPath = path.join(dir, 'test.conf');
  const security = aclFile
    ? { host: '127.0.0.1', plaintextPort: port, allowAnonymous: true, aclFile, identityFromCert: false, maxPacketBytes: 16 * 1024 * 1024, maxConnections: 1000 }
    : undefined;
  fs.writeFileSync(confPath, renderMosquittoConf({ host: '127.0.0.1', port, dataDir, user: os.userInfo().username, ...conf, ...(security ? { security } : {}) }));

  let proc: ChildProcess | undefined;
  let closed: Promise<void> = Promise.resolve();
  const start = async () => {
    const child = spawn(bin, ['-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    closed = new Promise((resolve) =>
      child.once('close', () => {
        running.delete(child);
        resolve();
      }),
    );
    proc = child;
    const up = await pollUntil(async () => child.exitCode !== null || (await canConnect('127.0.0.1', port, 500)), 15_000);
    if (!up || child.exitCode !== null) throw new Error(`the test's mosquitto did not start on port ${port}:\n${stderr}`);
  };
  const signal = async (sig: NodeJS.Signals) => {
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
    await closed;
  };
  const sys = async (topic: string) => {
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 });
    try {
      const value = new Promise<number | undefined>((resolve) => {
        c.on('message', (_t, payload) => resolve(Number(payload.toString())));
        setTimeout(() => resolve(undefined), 3_000).unref();
      });
      await c.subscribeAsync(topic);
      return await value;
    } finally {
      await c.endAsync(true);
    }
  };
  await start();
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    db,
    kill: () => signal('SIGKILL'),
    start,
    stop: async () => {
      await signal('SIGTERM');
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
    sys,
  };
}
