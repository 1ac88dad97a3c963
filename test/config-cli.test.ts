import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { baseEnv, runCli } from './helpers/node-process.js';
import { freePort } from './helpers/ports.js';

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

describe('bad configuration', () => {
  const bad = {
    MQTT_PORT: '70000',
    APP_ENV: 'staging',
    PUBSUB_TOPIC: 'readings',
    LOG_LEVEL: 'loud',
    FILE_SINK: 'maybe',
  };

  it('check-config exits 1 and names every problem at once', async () => {
    const r = await runCli(['check-config'], baseEnv(bad));
    expect(r.code).toBe(1);
    for (const name of ['MQTT_PORT', 'APP_ENV', 'PUBSUB_TOPIC', 'LOG_LEVEL', 'FILE_SINK']) expect(r.stderr).toContain(name);
    expect(r.stderr).toContain('70000');
  });

  it('run exits 1 before any port opens, naming every problem', async () => {
    const httpPort = await freePort();
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'bad-config-'));
    const r = await runCli(['run'], baseEnv({ ...bad, PORT: String(httpPort), DATA_DIR: dataDir }));
    expect(r.code).toBe(1);
    for (const name of ['MQTT_PORT', 'APP_ENV', 'PUBSUB_TOPIC', 'LOG_LEVEL', 'FILE_SINK']) expect(r.stderr).toContain(name);
    expect(await isFree(httpPort)).toBe(true);
  });

  it('an unknown key and a wrong type in the YAML file are both reported', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bad-yaml-'));
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, 'MQTT_PORTT: 1883\nPORT: eighty\n');
    const r = await runCli(['run', '--config', file], baseEnv({ DATA_DIR: dir }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('MQTT_PORTT');
    expect(r.stderr).toContain('PORT');
  });

  it('check-config prints the effective configuration with secrets redacted and exits 0', async () => {
    const r = await runCli(['check-config'], baseEnv({ MQTT_BROKER: 'mqtt://broker.example:1883', MQTT_PASSWORD: 's3cret-value', MQTT_USERNAME: 'ingest' }));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('MQTT_BROKER');
    expect(r.stdout).toContain('[redacted]');
    expect(r.stdout + r.stderr).not.toContain('s3cret-value');
  });
});
