/**
 * deploy/deploy.sh and the GitLab pipeline (deploy/ci/project-ci.yml), run against a stand-in `gcloud` on PATH
 * that records every call (one JSON array of arguments per line) and answers `artifacts docker images describe`
 * for the tags it is told exist.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, type Scalar, type YAMLSeq } from 'yaml';
import { ENVIRONMENTS } from '../src/deploy/render.js';
import { ROOT } from './helpers/node-process.js';

const REPO = 'europe-west1-docker.pkg.dev/mqtt-ingest-shared/mqtt-ingest/mqtt-ingest';
const SHA = '3f2c1a9e0b7d4c21a8e5f6071b2c3d4e5f607182';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'deploy-pipeline-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A fresh stand-in gcloud in its own folder; `known` are the image tags that exist. */
function standInGcloud(known: string[]): { bin: string; log: string; calls(): string[][] } {
  const dir = mkdtempSync(path.join(tmp, 'bin-'));
  const log = path.join(dir, 'calls.jsonl');
  const script = `#!/usr/bin/env node
const fs = require('node:fs');
const args = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify(args) + '\\n');
if (args[0] === 'artifacts' && args[3] === 'describe') {
  const tag = args[4].split(':').pop();
  if (!${JSON.stringify(known)}.includes(tag)) { process.stderr.write('ERROR: (gcloud.artifacts.docker.images.describe) Image not found\\n'); process.exit(1); }
}
`;
  writeFileSync(path.join(dir, 'gcloud'), script);
  chmodSync(path.join(dir, 'gcloud'), 0o755);
  return { bin: dir, log, calls: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as string[]) : []) };
}

/** Runs a command to its end. Standard input is closed: bash reads ~/.bashrc when it is a socket (rshd-style). */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    proc.on('error', reject);
    proc.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

const deploy = (args: string[], gcloud: { bin: string }, extra: NodeJS.ProcessEnv = {}) =>
  run(path.join(ROOT, 'deploy', 'deploy.sh'), args, { PATH: `${gcloud.bin}:${process.env.PATH}`, IMAGE_REPOSITORY: REPO, ...extra });

const projectOf = (env: string) => /^ {2}GCP_PROJECT_ID: (\S+)$/m.exec(readFileSync(path.join(ROOT, 'deploy', 'appengine', `${env}.yml`), 'utf8'))![1]!;

describe('deploy/deploy.sh', () => {
  it.each(ENVIRONMENTS)('%s: checks the image exists, then deploys that descriptor to its project as a new promoted version', async (env) => {
    const gcloud = standInGcloud([SHA]);
    const r = await deploy([env, SHA], gcloud);
    expect(r.code, r.stderr).toBe(0);
    const calls = gcloud.calls();
    expect(calls).toHaveLength(2);
    expect(calls[0]).toEqual(['artifacts', 'docker', 'images', 'describe', `${REPO}:${SHA}`, '--quiet']);
    const [cmd, flags] = [calls[1]!.slice(0, 3), calls[1]!.slice(3)];
    expect(cmd).toEqual(['app', 'deploy', path.join(ROOT, 'deploy', 'appengine', `${env}.yml`)]);
    const project = projectOf(env);
    expect(project).toBe(`mqtt-ingest-${env}`);
    expect(flags).toContain(`--project=${project}`);
    expect(flags).toContain(`--image-url=${REPO}:${SHA}`);
    expect(flags).toEqual(expect.arrayContaining(['--promote', '--stop-previous-version', '--quiet']));
    const version = flags.find((f) => f.startsWith('--version='))!.slice('--version='.length);
    // App Engine: lower case, digits, hyphens, a letter first; VERSION-dot-default-dot-PROJECT within 63.
    expect(version).toMatch(/^v\d{8}-\d{6}-3f2c1a9e0b7d$/);
    expect(`${version}-dot-default-dot-${project}`.length).toBeLessThanOrEqual(63);
  });

  it('a rollback redeploys an earlier tag as a new version', async () => {
    const gcloud = standInGcloud(['0a1b2c3d', SHA]);
    const r = await deploy(['prd', '0a1b2c3d'], gcloud);
    expect(r.code).toBe(0);
    expect(gcloud.calls()[1]).toContain(`--image-url=${REPO}:0a1b2c3d`);
  });

  it.each([
    [['staging', SHA], "unknown environment 'staging'"],
    [['prd'], ''],
    [[], ''],
    [['prd', ''], "'' is not an image tag"],
    [['prd', 'bad tag'], "'bad tag' is not an image tag"],
    [['prd', SHA, 'extra'], ''],
  ])('bad input %j: exits 2 with the usage line and calls nothing', async (args, why) => {
    const gcloud = standInGcloud([SHA]);
    const r = await deploy(args, gcloud);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('usage: deploy/deploy.sh dev|pprd|prd TAG');
    if (why) expect(r.stderr).toContain(why);
    expect(gcloud.calls()).toEqual([]);
  });

  it('stops before deploying when the image tag does not exist, or IMAGE_REPOSITORY is unset', async () => {
    const gcloud = standInGcloud([SHA]);
    const r = await deploy(['pprd', 'deadbeef'], gcloud);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`image ${REPO}:deadbeef not found; nothing was deployed`);
    expect(gcloud.calls().map((c) => c[0])).toEqual(['artifacts']);
    const unset = await deploy(['pprd', SHA], gcloud, { IMAGE_REPOSITORY: '' });
    expect(unset.code).toBe(2);
    expect(unset.stderr).toContain('set IMAGE_REPOSITORY');
  });
});

// ---- the pipeline

type Job = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
/** GitLab's `!reference [job, key]`, kept as a marker so rules can be resolved like GitLab does. */
const referenceTag = {
  tag: '!reference',
  collection: 'seq' as const,
  resolve: (seq: YAMLSeq) => ({ $reference: seq.items.map((i) => String((i as Scalar).value ?? i)) }),
};
const ci = parse(readFileSync(path.join(ROOT, 'deploy', 'ci', 'project-ci.yml'), 'utf8'), { customTags: [referenceTag] }) as Record<string, Job>;

/** A job with `extends` merged in (deep for maps, as GitLab does) and `!reference` rules expanded. */
function job(name: string): Job {
  const own = ci[name]!;
  const parents = ([] as string[]).concat(own.extends ?? []);
  let merged: Job = {};
  const deepMerge = (a: Job, b: Job): Job => {
    const out: Job = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = v && typeof v === 'object' && !Array.isArray(v) && a[k] && typeof a[k] === 'object' ? deepMerge(a[k], v) : v;
    return out;
  };
  for (const p of parents) merged = deepMerge(merged, job(p));
  merged = deepMerge(merged, own);
  if (merged.rules) {
    merged.rules = (merged.rules as Job[]).flatMap((r) => (r.$reference ? (ci[r.$reference[0]]![r.$reference[1]] as Job[]) : [r]));
  }
  return merged;
}

const jobNames = Object.keys(ci).filter((k) => !k.startsWith('.') && !['stages', 'variables', 'workflow', 'default', 'include'].includes(k));
const script = (j: Job) => ([] as string[]).concat(j.before_script ?? [], j.script ?? []).join('\n');

describe('deploy/ci/project-ci.yml', () => {
  it('orders the stages test → build → DEV → PPRD → PRD, with rollback apart', () => {
    expect(ci.stages).toEqual(['test', 'build', 'deploy-dev', 'deploy-pprd', 'deploy-prd', 'rollback']);
    for (const name of jobNames) expect(ci.stages, name).toContain(job(name).stage);
  });

  it('tests, then builds and pushes one image tagged with the commit SHA', () => {
    expect(script(job('test'))).toContain('bash .ci/run');
    const build = job('build-image');
    expect(build.needs).toEqual(['test']);
    expect(script(build)).toContain('--tag="$IMAGE_REPOSITORY:$CI_COMMIT_SHA"');
  });

  it('deploys DEV automatically from the default branch, PPRD and PRD by hand, all through deploy.sh with the same tag', () => {
    for (const env of ENVIRONMENTS) {
      const j = job(`deploy-${env}`);
      expect(j.variables.DEPLOY_ENV).toBe(env);
      expect(j.script).toEqual(['deploy/deploy.sh "$DEPLOY_ENV" "$CI_COMMIT_SHA"']);
      expect(j.needs).toContain('build-image');
      expect(j.environment.name).toBe(env);
      const rule = (j.rules as Job[]).find((r) => r.if?.includes('$CI_DEFAULT_BRANCH'))!;
      expect(rule.when ?? 'on_success').toBe(env === 'dev' ? 'on_success' : 'manual');
    }
    // Promotion is in order, each after the previous environment's smoke test passed.
    expect(job('deploy-pprd').needs).toContain('smoke-dev');
    expect(job('deploy-prd').needs).toContain('smoke-pprd');
  });

  it('runs the smoke test after every deploy, the rollback included', () => {
    for (const [deployJob, smokeJob] of [...ENVIRONMENTS.map((e) => [`deploy-${e}`, `smoke-${e}`]), ['rollback', 'smoke-rollback']]) {
      const j = job(smokeJob!);
      expect(j.needs).toEqual([deployJob]);
      expect(script(j)).toMatch(/node bin\/mqtt-ingest\.js smoke \\\s+--broker "\$\{!broker_var\}" --subscription "\$\{!subscription_var\}"/);
    }
  });

  it('rolls back only when asked: a web pipeline with ROLLBACK_ENV and ROLLBACK_TAG, by hand, through deploy.sh', () => {
    const j = job('rollback');
    expect(j.script).toEqual(['deploy/deploy.sh "$ROLLBACK_ENV" "$ROLLBACK_TAG"']);
    expect(j.rules).toEqual([expect.objectContaining({ if: expect.stringContaining('$ROLLBACK_TAG != ""'), when: 'manual' })]);
    // Every other job stays out of a rollback pipeline.
    for (const name of jobNames.filter((n) => !n.includes('rollback'))) {
      expect(job(name).rules[0], name).toEqual({ if: '$ROLLBACK_TAG != ""', when: 'never' });
    }
    // Deploys to one environment never overlap, rollbacks included.
    expect(job('rollback').resource_group).toBe('appengine-$ROLLBACK_ENV');
    for (const env of ENVIRONMENTS) expect(job(`deploy-${env}`).resource_group).toBe(`appengine-${env}`);
  });

  it('stores no key file: jobs use GitLab OIDC tokens with Workload Identity Federation', () => {
    const text = readFileSync(path.join(ROOT, 'deploy', 'ci', 'project-ci.yml'), 'utf8');
    expect(text).not.toMatch(/GOOGLE_APPLICATION_CREDENTIALS_JSON|private_key|GCP_SA_KEY|base64 -d/);
    for (const name of ['build-image', 'deploy-dev', 'rollback', 'smoke-prd']) expect(job(name).id_tokens.GITLAB_OIDC_TOKEN.aud).toContain('$GCP_WIF_PROVIDER');
  });

  it.each(ENVIRONMENTS)("deploy-%s's whole job, run in bash with the stand-in gcloud, authenticates as that environment's deployer and deploys the commit", async (env) => {
    const gcloud = standInGcloud([SHA]);
    const j = job(`deploy-${env}`);
    const projectDir = mkdtempSync(path.join(tmp, 'job-'));
    // GitLab runs a job's lines in bash with errexit and pipefail.
    const r = await run('bash', ['-eo', 'pipefail', '-c', script(j)], {
      PATH: `${gcloud.bin}:${process.env.PATH}`,
      CI_PROJECT_DIR: projectDir,
      CI_COMMIT_SHA: SHA,
      IMAGE_REPOSITORY: REPO,
      GCP_WIF_PROVIDER: 'projects/123/locations/global/workloadIdentityPools/gitlab/providers/gitlab',
      GITLAB_OIDC_TOKEN: 'header.payload.signature',
      DEPLOYER_SA_DEV: 'deployer@mqtt-ingest-dev.iam.gserviceaccount.com',
      DEPLOYER_SA_PPRD: 'deployer@mqtt-ingest-pprd.iam.gserviceaccount.com',
      DEPLOYER_SA_PRD: 'deployer@mqtt-ingest-prd.iam.gserviceaccount.com',
      ...j.variables,
    });
    expect(r.code, r.stderr).toBe(0);
    const calls = gcloud.calls();
    expect(calls[0]).toEqual(['auth', 'login', `--cred-file=${projectDir}/.gcp-credentials.json`, '--quiet']);
    const cred = JSON.parse(readFileSync(path.join(projectDir, '.gcp-credentials.json'), 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(cred.type).toBe('external_account');
    expect(cred.service_account_impersonation_url).toContain(`deployer@mqtt-ingest-${env}.iam.gserviceaccount.com:generateAccessToken`);
    expect(readFileSync(cred.credential_source.file, 'utf8')).toBe('header.payload.signature');
    expect(calls.at(-1)!.slice(0, 2)).toEqual(['app', 'deploy']);
    expect(calls.at(-1)).toContain(`--project=mqtt-ingest-${env}`);
    expect(calls.at(-1)).toContain(`--image-url=${REPO}:${SHA}`);
  });
});
