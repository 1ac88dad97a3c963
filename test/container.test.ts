/**
 * The image, checked without a Docker engine: the Dockerfile's properties, then its runtime stage replayed on
 * this machine: the `deps` stage's COPYs and RUN (`npm ci --omit=dev` on the compiled dist/, with an empty npm
 * cache of its own), the runtime stage's COPYs and ENV, and the exact ENTRYPOINT + CMD, until /readyz says 200
 * and SIGTERM ends it with 0.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findOnPath } from '../src/intake/mosquitto/process-utils.js';
import { lastOf, parseDockerfile, stageEnv, type Instruction, type Stage } from './helpers/dockerfile.js';
import { ROOT } from './helpers/node-process.js';
import { freePort, waitFor } from './helpers/ports.js';
import { serviceAvailable } from './helpers/skip.js';
import { hasMosquitto } from './helpers/mosquitto.js';

const docker = parseDockerfile(path.join(ROOT, 'Dockerfile'));
const stage = (name: string) => docker.stages.find((s) => s.name === name)!;
const runs = (s: Stage) => s.instructions.filter((i) => i.op === 'RUN').map((i) => i.args);
const installStage = docker.stages.find((s) => runs(s).some((r) => /npm ci\b.*--omit=dev/.test(r)));
const runtime = docker.stages.at(-1)!;

describe('Dockerfile', () => {
  it('builds from Node 22 LTS on Debian bookworm-slim in several stages, compiling in one that is not the runtime', () => {
    expect(docker.stages.length).toBeGreaterThanOrEqual(2);
    for (const s of docker.stages) expect(s.image).toBe('node:22-bookworm-slim');
    const build = stage('build');
    expect(runs(build).some((r) => /npm run build|tsc/.test(r))).toBe(true);
    expect(build).not.toBe(runtime);
  });

  it('has a runtime stage with the compiled output and production dependencies only', () => {
    expect(installStage).toBeDefined();
    expect(installStage).not.toBe(stage('build'));
    const copies = runtime.instructions.filter((i) => i.op === 'COPY');
    // node_modules comes from the --omit=dev install, dist from the build; nothing is installed or compiled here.
    expect(copies.find((c) => c.paths[0]!.includes('node_modules'))?.flags.from).toBe(installStage!.name);
    expect(copies.find((c) => c.paths[0]!.includes('dist'))?.flags.from).toBe('build');
    for (const c of copies.filter((c) => !c.flags.from)) expect(c.paths.slice(0, -1).every((p) => /^(package\.json|bin\/?)$/.test(p))).toBe(true);
    for (const r of runs(runtime)) {
      expect(r).not.toMatch(/npm (ci|install)|tsc|python3|g\+\+|supervisor/);
    }
    expect(runs(installStage!).join('\n')).not.toMatch(/--ignore-scripts/); // better-sqlite3 must build there
  });

  it('installs Mosquitto and tini from Debian, and tini is PID 1 in exec form', () => {
    const apt = runs(runtime).find((r) => r.includes('apt-get install'))!;
    expect(apt).toMatch(/--no-install-recommends/);
    expect(apt.split(/\s+/)).toEqual(expect.arrayContaining(['mosquitto', 'tini']));
    expect(apt).toMatch(/rm -rf \/var\/lib\/apt\/lists/);
    expect(lastOf(runtime, 'ENTRYPOINT')?.exec).toEqual(['/usr/bin/tini', '--']);
    expect(lastOf(runtime, 'CMD')?.exec).toEqual(['node', 'bin/mqtt-ingest.js', 'run']);
  });

  it('runs as a non-root user with /data as the DATA_DIR volume and exposes 1883, 8883 and 8080', () => {
    const user = lastOf(runtime, 'USER')?.args;
    expect(user).toBeDefined();
    expect(['root', '0', '0:0']).not.toContain(user);
    expect(lastOf(runtime, 'VOLUME')?.exec ?? [lastOf(runtime, 'VOLUME')?.args]).toEqual(['/data']);
    expect(stageEnv(runtime).DATA_DIR).toBe('/data');
    const exposed = runtime.instructions.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
    expect(exposed.sort()).toEqual(['1883', '8080', '8883']);
    // The /data folder is made for that user before USER switches to it.
    const chown = runs(runtime).find((r) => r.includes('/data'));
    expect(chown).toMatch(new RegExp(`chown ${user}:${user} /data`));
  });

  it('keeps installed and built output, data and the git history out of the build context', () => {
    const ignored = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['node_modules', 'dist', '.git', 'data']) expect(ignored).toContain(p);
  });
});

const canRun = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

describe.runIf(canRun)('the runtime stage, replayed outside Docker', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-image-'));
  const app = path.join(tmp, 'app');
  let installLog = '';

  /** Replays one COPY: build-context paths come from the repository, `--from=build` from its compiled dist/. */
  function replayCopy(ins: Instruction, workdir: string): void {
    const dest = ins.paths.at(-1)!;
    for (const src of ins.paths.slice(0, -1)) {
      const from = ins.flags.from;
      if (from === installStage!.name) {
        // The runtime takes the install stage's output, made in this same folder.
        expect(path.resolve(workdir, dest)).toBe(path.resolve(app, src.replace(/^\/app\/?/, '')));
        expect(existsSync(path.resolve(workdir, dest))).toBe(true);
        continue;
      }
      const source = from === 'build' ? path.join(ROOT, src.replace(/^\/app\/?/, '')) : path.join(ROOT, src);
      if (!existsSync(source)) throw new Error(`${source} is missing: run \`npm run build\` first`);
      const target = dest.endsWith('/') && !src.endsWith('/') ? path.join(workdir, dest, path.basename(src)) : path.join(workdir, dest);
      cpSync(source, target, { recursive: true });
    }
  }

  beforeAll(() => {
    mkdirSync(app, { recursive: true });
    // The install stage: its WORKDIR is the app folder; its COPYs, then its RUN lines exactly as written.
    for (const ins of installStage!.instructions) {
      if (ins.op === 'COPY') replayCopy(ins, app);
      if (ins.op === 'RUN' && ins.args.includes('npm')) {
        installLog += execFileSync('sh', ['-c', ins.args], {
          cwd: app,
          // An empty cache of its own: the install needs nothing but the registry, and `npm cache clean` stays here.
          // HOME stays: the machine's npm settings (such as where Node's headers are for node-gyp) live there.
          env: { PATH: process.env.PATH, HOME: process.env.HOME, npm_config_cache: path.join(tmp, 'npm-cache') },
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
          timeout: 240_000,
        });
      }
    }
    for (const ins of runtime.instructions.filter((i) => i.op === 'COPY')) replayCopy(ins, app);
  }, 300_000);

  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('installs production dependencies only, with a prepare step that needs no dev tools', () => {
    expect(installLog).toMatch(/added \d+ packages/);
    const modules = readdirSync(path.join(app, 'node_modules'));
    // Dev-only tools (some @types are dependencies of production packages, so they are not a sign).
    for (const dev of ['typescript', 'vitest', 'vite']) expect(modules).not.toContain(dev);
    expect(existsSync(path.join(app, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'))).toBe(true);
    expect(existsSync(path.join(app, 'dist/src/cli/main.js'))).toBe(true);
  });

  it("runs the image's ENTRYPOINT and CMD until /readyz is 200 and the HEALTHCHECK passes, and exits 0 on SIGTERM", async () => {
    const tini = findOnPath('tini');
    if (!tini && process.env.CI === 'true') throw new Error('tini is required under CI=true (apt-get install tini)');
    const entry = lastOf(runtime, 'ENTRYPOINT')!.exec!;
    const cmd = lastOf(runtime, 'CMD')!.exec!;
    // Without tini on this machine the CMD runs alone (a developer's laptop); CI installs it.
    const argv = tini ? [...entry, ...cmd] : cmd;
    const dataDir = path.join(tmp, 'data');
    mkdirSync(dataDir);
    const httpPort = await freePort();
    const env = {
      PATH: process.env.PATH,
      HOME: tmp,
      METADATA_SERVER_DETECTION: 'none',
      ...stageEnv(runtime),
      // What the platform sets per instance: a writable volume and free ports on this shared machine.
      DATA_DIR: dataDir,
      PORT: String(httpPort),
      MQTT_PORT: String(await freePort()),
      MQTT_HOST: '127.0.0.1',
    };
    // Its own process group: whatever happens, the finally block takes down tini, the node and Mosquitto.
    const proc = spawn(argv[0]!, argv.slice(1), { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    try {
      const body = await waitFor(
        async () => {
          if (proc.exitCode !== null) throw new Error(`exited with ${proc.exitCode}:\n${output}`);
          const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
          return res.status === 200 ? ((await res.json()) as Record<string, unknown>) : undefined;
        },
        60_000,
        "the image's command to become ready",
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n--- output ---\n${output.slice(-4000)}`);
      });
      // The image holds Mosquitto: the node supervises it (MOSQUITTO_BIN from the image's ENV).
      const components = (body.components ?? body) as Record<string, unknown>;
      expect(components, JSON.stringify(body)).toMatchObject({ mode: 'mosquitto', broker: { state: 'up' } });
      const health = lastOf(runtime, 'HEALTHCHECK')!.exec!;
      execFileSync(health[0]!, health.slice(1), { env, timeout: 10_000 });

      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(output).toContain('"stopped"');
      // Mosquitto went with it: no process is left running on this data folder's configuration.
      expect(processesUsing(dataDir)).toEqual([]);
    } finally {
      try {
        process.kill(-(proc.pid as number), 'SIGKILL');
      } catch {
        // the group has already exited
      }
      if (proc.exitCode === null && proc.signalCode === null) await exited;
    }
  });
});

function processesUsing(dir: string): string[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .flatMap((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
        return cmdline.includes(dir) ? [cmdline] : [];
      } catch {
        return [];
      }
    });
}
