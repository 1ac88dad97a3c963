/**
 * `mqtt-ingest provision [--dry-run] [--config FILE] [--verification-subscription NAME] [--service-account EMAIL]`
 * Creates what the configuration names (src/deploy/provision.ts), with ROUTES_FILE also every route's Pub/Sub
 * topic and typed BigQuery table, and checks the node's permissions on it.
 * Exit 0: everything exists (or would be created, with --dry-run) and no permission is missing; 1 otherwise;
 * 2 on bad usage. It reads the same configuration as `run` (environment and --config), so it provisions exactly
 * what the node will use: run it with the environment's descriptor variables (docs/operations.md).
 * Without Google credentials where a Google endpoint is called it says so once, with the fix, and exits 1. A
 * service that keeps it waiting is named every 15 s, and a call fails after --timeout seconds (src/deploy/waiting.ts);
 * one that cannot be reached (refused, unresolved, silent) is said within 15 s. On a terminal a live line on stderr
 * counts the resources and permissions checked; a summary line on stderr ends every run that got to the checks.
 */
import type { BigQuery } from '@google-cloud/bigquery';
import type { PubSub } from '@google-cloud/pubsub';
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import type { Command } from 'commander';
import type { AuthClient } from 'google-auth-library';
import { loadConfig, type Config } from '../config/load.js';
import { pubsubTopic } from '../sinks/pubsub/config.js';
import { createSecretManagerClient } from '../config/secrets.js';
import { ConfigError } from '../core/errors.js';
import { bigqueryClient, credentialsMessage, credentialsProblem, impersonatedAuth, METADATA_SERVER, pubsubClient, type CredentialsProblem } from '../deploy/gcp-clients.js';
import { provision, type ProvisionClients, type ProvisionProgress, type ProvisionTarget, type ServiceKey } from '../deploy/provision.js';
import { formatReport } from '../deploy/provision-report.js';
import { environmentSource, ENVIRONMENTS, isDeployEnv } from '../deploy/render.js';
import { SMOKE_TOPIC_PREFIX } from '../deploy/smoke.js';
import { endCommand, ServiceCalls, waitNoticeMs, type ActiveCall, type Service } from '../deploy/waiting.js';
import { proxyVariable } from '../deploy/reach.js';
import { duration, Progress, type ProgressStream } from './progress.js';
import { baseUrlOf } from '../sinks/bigquery/bigquery-sink.js';
import { loadRoutes } from '../routes/config.js';
import { sinkRouting } from '../routes/destinations.js';

interface ProvisionCliOptions {
  dryRun?: boolean;
  /** Take the variables of deploy/environments/<env> (what is deployed) over the process environment. */
  env?: string;
  config?: string;
  verificationSubscription?: string;
  smokeTopicPrefix: string;
  serviceAccount?: string;
  /** Seconds one call to a service may take. */
  timeout?: string;
}

type Io = { stdout: Pick<NodeJS.WritableStream, 'write'>; stderr: ProgressStream };

/** How the command makes its clients; `auth` is the node's identity for the permission check. */
export interface ClientFactories {
  pubsub(projectId: string, config: Config, auth?: AuthClient): PubSub;
  bigquery(projectId: string, config: Config, auth?: AuthClient): BigQuery;
  secretManager(config: Config, auth?: AuthClient): SecretManagerServiceClient;
  impersonate(serviceAccount: string): Promise<AuthClient>;
  /** Why there are no usable Application Default Credentials (with the fix), or undefined. */
  credentials(): Promise<CredentialsProblem | undefined>;
}

/** The clients of the configuration's endpoints: Google's, or the emulators and stand-ins it names. */
export const defaultFactories: ClientFactories = {
  pubsub: (projectId, c, auth) => pubsubClient(projectId, { emulatorHost: c.PUBSUB_EMULATOR_HOST, authClient: auth }),
  bigquery: (projectId, c, auth) => bigqueryClient(c, projectId, auth),
  secretManager: (c, auth) => createSecretManagerClient(c.SECRET_MANAGER_API_ENDPOINT, auth),
  impersonate: (serviceAccount) => impersonatedAuth(serviceAccount),
  credentials: () => credentialsProblem(),
};

/** Where each service is asked, as the messages about a slow or silent one name it. */
function serviceEndpoints(c: Config): Record<ServiceKey, Service> {
  const bigquery = baseUrlOf({ apiEndpoint: c.BIGQUERY_API_ENDPOINT, emulatorHost: c.BIGQUERY_EMULATOR_HOST });
  const bigqueryFrom = c.BIGQUERY_EMULATOR_HOST ? 'BIGQUERY_EMULATOR_HOST' : c.BIGQUERY_API_ENDPOINT ? 'BIGQUERY_API_ENDPOINT' : undefined;
  return {
    pubsub: c.PUBSUB_EMULATOR_HOST
      ? { name: 'the Pub/Sub emulator', at: c.PUBSUB_EMULATOR_HOST, from: 'PUBSUB_EMULATOR_HOST' }
      : { name: 'Pub/Sub', at: 'pubsub.googleapis.com' },
    bigquery: { name: 'BigQuery', at: new URL(bigquery).origin, from: bigqueryFrom },
    secretManager: c.SECRET_MANAGER_API_ENDPOINT
      ? { name: 'Secret Manager', at: c.SECRET_MANAGER_API_ENDPOINT, from: 'SECRET_MANAGER_API_ENDPOINT' }
      : { name: 'Secret Manager', at: 'secretmanager.googleapis.com' },
  };
}

export async function provisionCommand(opts: ProvisionCliOptions, env: NodeJS.ProcessEnv, io: Io, make: ClientFactories = defaultFactories): Promise<number> {
  if (opts.env !== undefined) {
    const which = opts.env.toLowerCase();
    if (!isDeployEnv(which)) {
      io.stderr.write(`provision: --env must be one of ${ENVIRONMENTS.join(', ')}, got ${JSON.stringify(opts.env)}\n`);
      return 2;
    }
    // The environment's own variables win: a GCP_PROJECT_ID left in the shell must not redirect PRD's provisioning.
    env = { ...env, ...environmentSource(which).env };
  }
  let loaded;
  try {
    loaded = loadConfig({ env, file: opts.config });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`provision: invalid configuration:\n${err.problems.map((p) => `  - ${p}\n`).join('')}`);
    return 1;
  }
  const c = loaded.config;
  let routing;
  try {
    // Read again as `run` reads it: the configuration's rule has checked the file already.
    const routes = loadRoutes(c);
    routing = routes ? sinkRouting(routes) : undefined;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`provision: invalid configuration:\n${err.problems.map((p) => `  - ${p}\n`).join('')}`);
    return 1;
  }
  const topic = pubsubTopic(c);
  const projectId = topic?.projectId ?? c.GCP_PROJECT_ID;
  if (!projectId) {
    io.stderr.write('provision: set GCP_PROJECT_ID (and PUBSUB_TOPIC and/or BIGQUERY_DATASET, BIGQUERY_TABLE): there is nothing to provision\n');
    return 2;
  }
  const sub = opts.verificationSubscription;
  if (sub && !topic) {
    io.stderr.write('provision: --verification-subscription needs PUBSUB_TOPIC: the subscription is made on that topic\n');
    return 2;
  }
  const seconds = Number(opts.timeout ?? '60');
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 3600) {
    io.stderr.write('provision: --timeout must be a whole number of seconds from 1 to 3600\n');
    return 2;
  }
  const target: ProvisionTarget = {
    projectId,
    topic: topic?.path,
    verificationSubscription: sub ? (sub.startsWith('projects/') ? sub : `projects/${projectId}/subscriptions/${sub}`) : undefined,
    smokeTopicPrefix: opts.smokeTopicPrefix,
    bigquery:
      c.BIGQUERY_DATASET && c.BIGQUERY_TABLE
        ? {
            dataset: c.BIGQUERY_DATASET,
            table: c.BIGQUERY_TABLE,
            location: c.BIGQUERY_LOCATION,
            ...(routing ? { rawTable: routing.rawTable, routeTables: routing.bigqueryTables } : {}),
          }
        : undefined,
    routeTopics: routing?.pubsubTopics,
    secrets: Object.entries(loaded.secretRefs).map(([key, ref]) => ({ key, secretName: ref.secretName })),
  };

  const endpoints = serviceEndpoints(c);
  const progress = new Progress('provision', io.stderr);
  let waitingOn: ActiveCall | undefined;
  let reached: ProvisionProgress | undefined;
  const draw = () => progress.update(() => liveText(reached, waitingOn), { live: true });
  const calls = new ServiceCalls({
    say: (line) => progress.line(`provision: ${line}`),
    noticeMs: waitNoticeMs(env),
    deadlineMs: seconds * 1000,
    proxy: proxyVariable(env),
    onCall: (call) => {
      waitingOn = call;
      if (reached) draw();
    },
  });

  // Emulators and plain-http stand-ins take no credentials; Google's endpoints and impersonation do.
  const needCredentials = [
    (topic || target.routeTopics?.length) && !c.PUBSUB_EMULATOR_HOST ? 'Pub/Sub' : '',
    target.bigquery && !endpoints.bigquery.at.startsWith('http://') ? 'BigQuery' : '',
    target.secrets.length && !c.SECRET_MANAGER_API_ENDPOINT?.startsWith('http://') ? 'Secret Manager' : '',
    opts.serviceAccount ? `impersonating ${opts.serviceAccount}` : '',
  ].filter(Boolean);
  if (needCredentials.length > 0) {
    progress.update('looking up Google credentials');
    let problem: string | undefined;
    try {
      const found = await calls.call(METADATA_SERVER, 'Application Default Credentials lookup', () => make.credentials());
      if (found) problem = credentialsMessage(found, needCredentials);
    } catch (err) {
      problem = (err as Error).message.split('\n')[0];
    }
    if (problem) {
      progress.stop();
      io.stderr.write(`provision: ${problem}\n`);
      return 1;
    }
  }

  const clients: ProvisionClients = {
    pubsub: make.pubsub(projectId, c),
    bigquery: target.bigquery ? make.bigquery(projectId, c) : undefined,
    secretManager: target.secrets.length ? make.secretManager(c) : undefined,
  };
  let identity = 'the caller (Application Default Credentials)';
  const show = (p: ProvisionProgress) => {
    reached = p;
    draw();
  };
  try {
    if (opts.serviceAccount) {
      // The permission check acts as the node's service account; creating stays with the caller.
      const auth = await make.impersonate(opts.serviceAccount);
      clients.check = {
        pubsub: make.pubsub(projectId, c, auth),
        bigquery: target.bigquery ? make.bigquery(projectId, c, auth) : undefined,
        secretManager: target.secrets.length ? make.secretManager(c, auth) : undefined,
      };
      identity = opts.serviceAccount;
    }
    const report = await provision(target, clients, { dryRun: opts.dryRun === true, call: (key, what, fn) => calls.call(endpoints[key], what, fn), progress: show });
    progress.stop();
    io.stdout.write(formatReport(report, { dryRun: opts.dryRun === true, identity }));
    const checked = `${plural(report.steps.length, 'resource')} and ${plural(report.permissions.length, 'permission')} checked`;
    progress.done(`${checked}${opts.dryRun ? ' (dry run)' : ''} in ${duration(progress.elapsedMs())}: ${report.ok ? 'ready' : 'NOT READY'}`);
    return report.ok ? 0 : 1;
  } catch (err) {
    progress.stop();
    io.stderr.write(`provision: ${(err as Error).message.split('\n')[0]}\n`);
    progress.done(`stopped after ${duration(progress.elapsedMs())}${reached ? `, ${progressText(reached)}` : ''}`);
    return 1;
  } finally {
    await Promise.allSettled([clients.pubsub.close(), clients.check?.pubsub.close(), clients.secretManager?.close(), clients.check?.secretManager?.close()]);
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** How far it got: `3/7 resources checked`, then `7/7 resources, 2/9 permissions checked`. */
function progressText(p: ProvisionProgress): string {
  if (p.permissions === 0 && p.resources < p.plannedResources) return `${p.resources}/${p.plannedResources} resources checked`;
  return `${p.resources}/${p.plannedResources} resources, ${p.permissions}/${p.plannedPermissions} permissions checked`;
}

/** The live line: how far it got, and the call it waits for once that takes a second or more. */
function liveText(p: ProvisionProgress | undefined, call: ActiveCall | undefined): string {
  const done = p ? progressText(p) : 'starting';
  const waited = call ? Math.floor((Date.now() - call.started) / 1000) : 0;
  return call && waited >= 1 ? `${done}; waiting for ${call.service.name} (${call.what}), ${waited} s` : done;
}

export function registerProvision(program: Command): void {
  program
    .command('provision')
    .description('create the Pub/Sub topic, BigQuery dataset and table the configuration names (and its routes\' topics and tables), and check the permissions on them')
    .option('--dry-run', 'only look: report what exists and what would be created')
    .option('--env <env>', "use that environment's variables from deploy/environments (dev, pprd, prd)")
    .option('--config <file>', 'YAML config file (else CONFIG_FILE); the environment overrides it')
    .option('--verification-subscription <name>', 'also make the smoke test subscription on PUBSUB_TOPIC (filtered to smoke messages)')
    .option('--smoke-topic-prefix <prefix>', 'MQTT topic prefix the smoke test publishes under', SMOKE_TOPIC_PREFIX)
    .option('--service-account <email>', "check the permissions as this account (the node's), by impersonation")
    .option('--timeout <seconds>', 'how long to wait for each answer of a service before that step fails', '60')
    .action(async (opts: ProvisionCliOptions) => {
      endCommand(await provisionCommand(opts, process.env, process));
    });
}
