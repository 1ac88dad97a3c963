/**
 * `mqtt-ingest deploy render`: the per-environment descriptors from deploy/environments/ (see src/deploy/render.ts).
 *   deploy render --env prd          print PRD's App Engine descriptor
 *   deploy render --write [--env E]  write every generated file (all environments unless --env)
 *   deploy render --check [--env E]  exit 1 when a committed file differs from what is rendered
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { IngestError } from '../core/errors.js';
import { checkGenerated, defaultDeployDir, ENVIRONMENTS, generatedFiles, isDeployEnv, renderAppEngine, type DeployEnv } from '../deploy/render.js';

interface RenderOptions {
  env?: string;
  write?: boolean;
  check?: boolean;
  dir?: string;
}

export function deployRender(opts: RenderOptions, io: { stdout: Pick<NodeJS.WritableStream, 'write'>; stderr: Pick<NodeJS.WritableStream, 'write'> }): number {
  const dir = path.resolve(opts.dir ?? defaultDeployDir());
  const env = opts.env?.toLowerCase();
  if (env !== undefined && env !== 'all' && !isDeployEnv(env)) {
    io.stderr.write(`deploy render: --env must be one of ${ENVIRONMENTS.join(', ')} or all, got ${JSON.stringify(opts.env)}\n`);
    return 2;
  }
  const envs: readonly DeployEnv[] = env === undefined || env === 'all' ? ENVIRONMENTS : [env];
  try {
    if (opts.check) {
      const results = checkGenerated(envs, dir);
      const stale = results.filter((r) => r.status !== 'ok');
      for (const r of stale) io.stderr.write(`${r.status}: deploy/${r.path}\n`);
      if (stale.length > 0) {
        io.stderr.write('run `mqtt-ingest deploy render --write` and commit the result\n');
        return 1;
      }
      io.stdout.write(`${results.length} generated files are up to date\n`);
      return 0;
    }
    if (opts.write) {
      for (const e of envs) {
        for (const f of generatedFiles(e, dir)) {
          mkdirSync(path.dirname(path.join(dir, f.path)), { recursive: true });
          writeFileSync(path.join(dir, f.path), f.content);
          io.stdout.write(`wrote deploy/${f.path}\n`);
        }
      }
      return 0;
    }
    if (env === undefined || env === 'all') {
      io.stderr.write('deploy render: name one environment with --env to print it, or use --write / --check\n');
      return 2;
    }
    io.stdout.write(renderAppEngine(env as DeployEnv, dir));
    return 0;
  } catch (err) {
    if (err instanceof IngestError) {
      io.stderr.write(`deploy render: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

export function registerDeploy(program: Command): void {
  const deploy = program.command('deploy').description('per-environment deploy descriptors (App Engine flexible, GKE)');
  deploy
    .command('render')
    .description('render deploy/appengine/<env>.yml and the GKE env patches from deploy/environments/')
    .option('--env <env>', `one of ${ENVIRONMENTS.join(', ')}, or all`)
    .option('--write', 'write the generated files')
    .option('--check', 'exit 1 when a committed file differs from the rendering')
    .option('--dir <dir>', 'the deploy folder (default: the repository\'s deploy/)')
    .action((opts: RenderOptions) => {
      process.exitCode = deployRender(opts, process);
    });
}
