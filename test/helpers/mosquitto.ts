import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { renderMosquittoConf } from '../../src/intake/mosquitto/mosquitto-conf.js';
import { canConnect, findOnPath, pollUntil } from '../../src/intake/mosquitto/process-utils.js';
import { freePort } from './ports.js';

/**
 * A standalone Mosquitto for integration tests: the "external broker" other tests connect to. It is not
 * the node's supervised broker; it has its own temp dir, conf and free port.
 */
export interface TestMosquitto {
  port: number;
  url: string;
  dataDir: string;
  /** The running process (a new one after restart()). */
  readonly proc: ChildProcess;
  /** SIGTERM (Mosquitto saves its database), SIGKILL after 5 s; resolves once the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL at once, as a crash: nothing since the last autosave reaches the database. */
  kill(): void;
  /** Stops it (if still running) and starts it again on the same port and data dir. */
  restart(): Promise<void>;
}

export function mosquittoBin(): string | undefined {
  return findOnPath(process.env.MOSQUITTO_BIN ?? 'mosquitto');
}

export function hasMosquitto(): boolean {
  return mosquittoBin() !== undefined;
}

export async function startMosquitto(
  opts: { dataDir?: string; persistence?: boolean; port?: number } = {},
): Promise<TestMosquitto> {
  const bin = mosquittoBin();
  if (!bin) throw new Error('mosquitto not found on PATH (apt-get install mosquitto)');
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-mosquitto-'));
  // freePort() can race with another process taking the port: with a port of our own choosing, retry.
  const attempts = opts.port === undefined ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    try {
      return await launch(bin, dataDir, port, opts.persistence ?? true);
    } catch (err) {
      if (attempt >= attempts || !String(err).includes('Address already in use')) throw err;
    }
  }
}

async function launch(bin: string, dataDir: string, port: number, persistence: boolean): Promise<TestMosquitto> {
  const confPath = path.join(dataDir, 'mosquitto', 'test-mosquitto.conf');
  fs.mkdirSync(path.dirname(confPath), { recursive: true });
  fs.writeFileSync(
    confPath,
    renderMosquittoConf({ host: '127.0.0.1', port, dataDir, user: os.userInfo().username, persistence }),
  );

  let proc: ChildProcess;
  let closed: Promise<void>;
  const output: string[] = [];

  const spawnIt = async () => {
    output.length = 0;
    const child = spawn(bin, ['-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    closed = new Promise((resolve) => child.once('close', () => resolve()));
    child.on('error', (err) => output.push(String(err)));
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) readline.createInterface({ input: stream }).on('line', (line) => output.push(line));
    }
    proc = child;
    // The port could answer from another process while ours fails to bind: the child must still be running.
    let exited = false;
    void closed.then(() => (exited = true));
    const ready = await pollUntil(async () => exited || (await canConnect('127.0.0.1', port, 500)), 15_000);
    if (exited) {
      await closed;
      throw new Error(`test mosquitto on port ${port} exited during start-up:\n  ${output.join('\n  ')}`);
    }
    if (!ready) throw new Error(`test mosquitto accepted no connection on port ${port} within 15 s`);
  };

  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return closed;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await closed;
    clearTimeout(timer);
  };

  try {
    await spawnIt();
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dataDir,
    get proc() {
      return proc;
    },
    stop,
    kill: () => {
      proc.kill('SIGKILL');
    },
    restart: async () => {
      await stop();
      await spawnIt();
    },
  };
}
