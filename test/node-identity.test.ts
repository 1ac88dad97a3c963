/**
 * What an operator sees of a running node and of one that cannot start: its version everywhere, the address its
 * HTTP server binds, and start-up errors that name the variable to change.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { baseEnv, ROOT, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { freePort, waitFor } from './helpers/ports.js';

const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** Whether a TCP connection to host:port is accepted. */
function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

let node: NodeProcess | undefined;
const scratch: string[] = [];
afterEach(async () => {
  await node?.kill();
  node = undefined;
});
afterAll(() => scratch.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('the version', () => {
  it('--version and -V print the package version', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag], baseEnv());
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(VERSION);
    }
  });

  it('is in the start-up log line, the readiness JSON and mqtt_ingest_build_info', async () => {
    const n = (node = await startNode({ MQTT_BROKER_MODE: 'embedded' }));
    await n.waitReady();
    // Readiness can answer before the start-up line has been read from the child's output.
    const started = await waitFor(() => n.logObjects().find((l) => l.code === 'NODE_STARTED'), 10_000, 'the start-up log line');
    expect(started?.version).toBe(VERSION);
    expect(n.logObjects().find((l) => l.code === 'NODE_STARTING')?.version).toBe(VERSION);
    expect((await n.readiness()).body.version).toBe(VERSION);
    expect(await n.metrics()).toMatch(new RegExp(`^mqtt_ingest_build_info\\{version="${VERSION.replace(/\./g, '\\.')}"\\} 1$`, 'm'));
  });
});

describe('HTTP_HOST', () => {
  // Every 127.0.0.0/8 address reaches this host, but a socket bound to 127.0.0.1 accepts only that one.
  it('127.0.0.1 keeps the HTTP server to that address; the default listens on all of them', async () => {
    node = await startNode({ MQTT_BROKER_MODE: 'embedded', HTTP_HOST: '127.0.0.1' });
    await node.waitReady();
    expect(await connects('127.0.0.1', node.httpPort)).toBe(true);
    expect(await connects('127.0.0.2', node.httpPort)).toBe(false);
    await node.kill();

    node = await startNode({ MQTT_BROKER_MODE: 'embedded' });
    await node.waitReady();
    expect(await connects('127.0.0.2', node.httpPort)).toBe(true);
  });
});

describe('start-up errors name the variable', () => {
  it('an HTTP port in use names PORT, and the node exits 1', async () => {
    const taken = net.createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => taken.listen(port, '0.0.0.0', resolve));
    try {
      node = await startNode({ MQTT_BROKER_MODE: 'embedded' }, { httpPort: port });
      const exit = await node.exited;
      expect(exit.code).toBe(1);
      const failed = node.logObjects().find((l) => l.code === 'START_FAILED') as { err?: { message?: string; code?: string } } | undefined;
      expect(failed?.err?.code).toBe('HTTP_START_FAILED');
      expect(failed?.err?.message).toContain(`port ${port} on 0.0.0.0 is already in use by another process; set PORT to a free port`);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('a DATA_DIR that is a file stops run before any port opens, naming DATA_DIR and the path', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'data-file-'));
    scratch.push(dir);
    const file = path.join(dir, 'data');
    writeFileSync(file, '');
    const httpPort = await freePort();
    const r = await runCli(['run'], baseEnv({ DATA_DIR: file, PORT: String(httpPort), MQTT_PORT: String(await freePort()), MQTT_BROKER_MODE: 'embedded' }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`DATA_DIR: ${JSON.stringify(file)} is a file, not a directory`);
    expect(await connects('127.0.0.1', httpPort)).toBe(false);
  });

  it('a spool folder that cannot be opened names DATA_DIR and the path (SPOOL_OPEN_FAILED)', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'spool-file-'));
    scratch.push(dataDir);
    writeFileSync(path.join(dataDir, 'spool'), ''); // where the spool's folder should be
    node = await startNode({ MQTT_BROKER_MODE: 'embedded' }, { dataDir });
    expect((await node.exited).code).toBe(1);
    const failed = node.logObjects().find((l) => l.code === 'START_FAILED') as { err?: { message?: string; code?: string } } | undefined;
    expect(failed?.err?.code).toBe('SPOOL_OPEN_FAILED');
    expect(failed?.err?.message).toContain(`cannot open the spool in ${JSON.stringify(path.join(dataDir, 'spool'))} (DATA_DIR=${JSON.stringify(dataDir)})`);
  });

  it("run logs a warning for a mistyped variable and for the old deployment's MQTT_TOPIC", async () => {
    node = await startNode({ MQTT_BROKER_MODE: 'embedded', PUBSUB_TOPICS: 'sensors', MQTT_TOPIC: 'plant/#' });
    await node.waitReady();
    const warnings = node.logObjects().filter((l) => l.code === 'CONFIG_WARNING').map((l) => String(l.message));
    expect(warnings).toContain('PUBSUB_TOPICS: unknown environment variable, not read; did you mean PUBSUB_TOPIC?');
    expect(warnings.some((w) => w.startsWith("MQTT_TOPIC: is the old deployment's name"))).toBe(true);
  });
});
