/**
 * The status page in a real headless Chromium (Debian's `chromium`): it runs its script without console errors,
 * draws a banner per component from /api/status, and turns the file sink's banner red while the sink cannot write
 * (its directory made unwritable), green again after. Screenshots of each state are kept in the test's temp folder.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { blockFileSink } from './helpers/disk.js';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((f) => fs.existsSync(f));
const required = process.env.CI === 'true';

/** Loads the page, lets its script run (virtual time), and returns the DOM and what the console said. */
function render(url: string, screenshot: string): Promise<{ dom: string; console: string }> {
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--enable-logging=stderr', '--v=0', '--virtual-time-budget=3000', '--window-size=1100,1400'];
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-'));
  const run = (extra: string[]) =>
    new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
      execFile(CHROMIUM!, [...args, `--user-data-dir=${userDir}`, ...extra, url], { timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
        err && !stdout ? reject(Object.assign(err, { stderr })) : resolve({ stdout, stderr }),
      );
    });
  return (async () => {
    try {
      const { stdout, stderr } = await run(['--dump-dom']);
      await run([`--screenshot=${screenshot}`]);
      return { dom: stdout, console: stderr.split('\n').filter((l) => /CONSOLE|Uncaught|ERROR:CONSOLE/.test(l)).join('\n') };
    } finally {
      fs.rmSync(userDir, { recursive: true, force: true });
    }
  })();
}

function colourOf(dom: string, component: string): string | undefined {
  const m = new RegExp(`data-component="${component.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" data-colour="(\\w+)"`).exec(dom);
  return m?.[1];
}

describe.skipIf(!CHROMIUM && !required)('status page in headless Chromium', () => {
  let node: NodeProcess;
  const shots = fs.mkdtempSync(path.join(os.tmpdir(), 'status-page-'));
  const out = path.join(shots, 'out');
  beforeAll(async () => {
    if (!CHROMIUM) throw new Error('chromium is not installed (CI installs it in .ci/run)');
    fs.mkdirSync(out);
    node = await startNode({ MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on', FILE_SINK_DIR: out, SILENT_AFTER_SECONDS: '2' });
    await node.waitReady();
  });
  afterAll(async () => {
    await node?.kill();
    console.log(`status page screenshots: ${shots}`);
  });

  it('renders every banner green without console errors; the file sink banner turns amber while it cannot write, then green; a silent sensor is listed', async () => {
    const url = `http://127.0.0.1:${node.httpPort}/`;
    const healthy = await render(url, path.join(shots, 'healthy.png'));
    expect(healthy.console).toBe('');
    for (const c of ['node', 'broker', 'spool', 'sink file']) expect(colourOf(healthy.dom, c)).toBe('green');
    expect(fs.statSync(path.join(shots, 'healthy.png')).size).toBeGreaterThan(1000);

    // The sink's files cannot be written (directories in their place): its writes fail and are retried.
    const unblock = blockFileSink(out);
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { clientId: 'status-page-pub' });
    for (let i = 0; i < 5; i++) await pub.publishAsync('plant/status/page', `{"n":${i}}`, { qos: 1 });
    await pub.endAsync();
    await waitFor(async () => ((await node.readiness()).body.sinks as Record<string, { state: string }>).file?.state !== 'ok', 15_000, 'the file sink failing');
    const failing = await render(url, path.join(shots, 'sink-failing.png'));
    expect(failing.console).toBe('');
    expect(colourOf(failing.dom, 'sink file')).toMatch(/^(red|amber)$/);
    unblock();
    await waitFor(async () => ((await node.readiness()).body.sinks as Record<string, { state: string }>).file?.state === 'ok', 30_000, 'the file sink healthy again');
    // The sensor that published once is silent by now (SILENT_AFTER_SECONDS=2): listed, and the sources banner amber.
    const silent = async () => (await (await fetch(`http://127.0.0.1:${node.httpPort}/api/sources?silent=true`)).json()) as { sources: Array<{ topic: string }> };
    await waitFor(async () => (await silent()).sources.some((x) => x.topic === 'plant/status/page'), 10_000, 'the sensor silent');
    const back = await render(url, path.join(shots, 'recovered.png'));
    expect(colourOf(back.dom, 'sink file')).toBe('green');
    expect(colourOf(back.dom, 'sources')).toBe('amber');
    expect(back.dom).toMatch(/<table id="silent">.*plant\/status\/page/s);
  });
});
