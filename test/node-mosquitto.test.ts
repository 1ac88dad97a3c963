import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startNode } from './helpers/node-process.js';
import { hasMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { publishRange, seqOf } from './helpers/load.js';
import { readFileSink } from './helpers/file-output.js';
import { waitFor } from './helpers/ports.js';
import { pidAlive } from '../src/intake/mosquitto/process-utils.js';
import { mosquittoPaths } from '../src/intake/mosquitto/mosquitto-conf.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

function fileSeqs(dataDir: string): Set<number> {
  return new Set(readFileSink(path.join(dataDir, 'out')).map((r) => seqOf(r.payload)));
}

describe.runIf(run)('supervised Mosquitto in a running node', () => {
  it('restarts a Mosquitto child that died and ingest resumes', async () => {
    const node = await startNode({ MQTT_BROKER_MODE: 'mosquitto', RETRY_INITIAL_DELAY_MS: '200' });
    try {
      await node.waitReady();
      const url = `mqtt://127.0.0.1:${node.mqttPort}`;
      await publishRange(url, 0, 1000);
      await waitFor(() => fileSeqs(node.dataDir).size === 1000, 20_000, 'first 1,000 in the file sink');
      const pid = Number(readFileSync(mosquittoPaths(node.dataDir).pidFile, 'utf8'));
      process.kill(pid, 'SIGKILL');
      await waitFor(async () => (await node.metric('mqtt_ingest_broker_restarts_total')) === 1, 20_000, 'broker restart counted');
      await node.waitReady();
      const newPid = (await node.readiness()).body.broker as { pid: number };
      expect(newPid.pid).not.toBe(pid);
      await publishRange(url, 1000, 2000);
      await waitFor(() => fileSeqs(node.dataDir).size === 2000, 20_000, 'all 2,000 in the file sink');
    } finally {
      await node.kill();
    }
  });

  it('replaces a stale Mosquitto left running by a node that was SIGKILLed', async () => {
    const first = await startNode({ MQTT_BROKER_MODE: 'mosquitto' });
    await first.waitReady();
    const stalePid = Number(readFileSync(mosquittoPaths(first.dataDir).pidFile, 'utf8'));
    await first.killNodeOnly();
    expect(pidAlive(stalePid)).toBe(true); // the orphan keeps the port
    const second = await startNode({ MQTT_BROKER_MODE: 'mosquitto' }, { dataDir: first.dataDir, mqttPort: first.mqttPort });
    try {
      await second.waitReady();
      expect(pidAlive(stalePid)).toBe(false);
      const newPid = Number(readFileSync(mosquittoPaths(first.dataDir).pidFile, 'utf8'));
      expect(newPid).not.toBe(stalePid);
      await publishRange(`mqtt://127.0.0.1:${second.mqttPort}`, 0, 500);
      await waitFor(() => fileSeqs(second.dataDir).size === 500, 20_000, '500 in the file sink');
      expect(await second.stop()).toBe(0);
      // A clean stop removes the pid file and leaves no broker behind.
      expect(existsSync(mosquittoPaths(first.dataDir).pidFile)).toBe(false);
      expect(pidAlive(newPid)).toBe(false);
    } finally {
      await second.kill();
    }
  });

  it('a SIGTERM during start-up stops what was started and exits 0, leaving no Mosquitto behind', async () => {
    const node = await startNode({ MQTT_BROKER_MODE: 'mosquitto' });
    try {
      await waitFor(() => node.logObjects().some((l) => l.code === 'HTTP_LISTENING'), 20_000, 'http listening');
      node.proc.kill('SIGTERM');
      const { code } = await node.exited;
      expect(code).toBe(0);
      const left = readdirSync('/proc').filter((p) => {
        if (!/^\d+$/.test(p)) return false;
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(node.dataDir);
        } catch {
          return false;
        }
      });
      expect(left).toEqual([]);
    } finally {
      await node.kill();
    }
  });
});
