/**
 * `mqtt-ingest smoke --broker URL --subscription SUB`: the after-deploy check (src/deploy/smoke.ts).
 * Exit 0 when the marked message arrived with the contract's attributes, 1 when it did not, 2 on bad usage.
 * The broker password comes only from SMOKE_MQTT_PASSWORD (never the command line, which `ps` and CI logs show).
 * Without Google credentials (and no PUBSUB_EMULATOR_HOST) it says so once, with the fix, before publishing.
 * Pub/Sub or a broker that cannot be reached is said within 15 s (src/deploy/waiting.ts); on a terminal a live
 * line on stderr says what the test waits for and for how long; a summary line on stdout ends every run.
 */
import { v1 } from '@google-cloud/pubsub';
import type { Command } from 'commander';
import { credentialsMessage, credentialsProblem, METADATA_SERVER, pubsubClient } from '../deploy/gcp-clients.js';
import { runSmoke, SMOKE_TOPIC_PREFIX, withoutUrlPassword } from '../deploy/smoke.js';
import { endCommand, ServiceCalls, waitNoticeMs, type Service } from '../deploy/waiting.js';
import { proxyVariable } from '../deploy/reach.js';
import { duration, Progress, type ProgressStream } from './progress.js';

interface SmokeCliOptions {
  broker: string;
  subscription: string;
  project?: string;
  topicPrefix: string;
  timeout: string;
  username?: string;
  ca?: string;
}

const SUBSCRIPTION_PATH = /^projects\/([^/]+)\/subscriptions\/([^/]+)$/;

export async function smokeCommand(opts: SmokeCliOptions, env: NodeJS.ProcessEnv, io: { stdout: Pick<NodeJS.WritableStream, 'write'>; stderr: ProgressStream }): Promise<number> {
  const usage = (why: string) => {
    io.stderr.write(`smoke: ${why}\n`);
    return 2;
  };
  try {
    if (!['mqtt:', 'mqtts:', 'tcp:', 'ssl:'].includes(new URL(opts.broker).protocol)) return usage('--broker must be an mqtt:// or mqtts:// URL');
  } catch {
    // Not echoed: it may hold user:password@, and CI logs keep what is printed.
    return usage('--broker must be an mqtt:// or mqtts:// URL (the value given does not parse as a URL)');
  }
  const project = opts.project ?? env.GCP_PROJECT_ID;
  const subscription = SUBSCRIPTION_PATH.test(opts.subscription) ? opts.subscription : project ? `projects/${project}/subscriptions/${opts.subscription}` : undefined;
  if (!subscription) return usage('--subscription needs a project: give projects/P/subscriptions/S, --project or GCP_PROJECT_ID');
  const seconds = Number(opts.timeout);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 3600) return usage('--timeout must be a whole number of seconds from 1 to 3600');

  const emulatorHost = env.PUBSUB_EMULATOR_HOST || undefined;
  const noticeMs = waitNoticeMs(env);
  // Progress goes to stdout with the other lines of the run; failures to stderr; the live line to stderr (a terminal).
  const progress = new Progress('smoke', io.stderr);
  const say = (line: string) => progress.line(line, io.stdout);
  const fail = (text: string) => {
    progress.stop();
    io.stderr.write(text);
  };
  const calls = new ServiceCalls({ say, noticeMs, deadlineMs: seconds * 1000, proxy: proxyVariable(env) });
  if (!emulatorHost) {
    progress.update('looking up Google credentials');
    let problem: string | undefined;
    try {
      const found = await calls.call(METADATA_SERVER, 'Application Default Credentials lookup', () => credentialsProblem(env));
      if (found) problem = credentialsMessage(found, ['Pub/Sub (the verification subscription)']);
    } catch (err) {
      problem = (err as Error).message.split('\n')[0];
    }
    if (problem) {
      fail(`smoke test FAILED: ${problem}\n`);
      return 1;
    }
  }
  const service: Service = emulatorHost
    ? { name: 'the Pub/Sub emulator', at: emulatorHost, from: 'PUBSUB_EMULATOR_HOST' }
    : { name: 'Pub/Sub', at: 'pubsub.googleapis.com' };
  const pubsub = pubsubClient(SUBSCRIPTION_PATH.exec(subscription)![1]!, { emulatorHost });
  let subscriber: v1.SubscriberClient | undefined;
  let phase: (() => string) | undefined;
  const status = (text: () => string) => {
    phase = text;
    progress.update(text, { live: true });
  };
  /** The summary line, on stdout with the run's other lines: how it ended, how long it took, and where it stopped. */
  const summary = (passed: boolean) =>
    progress.done(passed ? `passed in ${duration(progress.elapsedMs())}` : `FAILED after ${duration(progress.elapsedMs())}${phase ? ` (while ${phase().replace(/, \d+ s$/, '')})` : ''}`, io.stdout);
  try {
    // The generated client, from the PubSub object's own endpoint and credential settings.
    const config = await pubsub.getClientConfig();
    subscriber = new v1.SubscriberClient({ ...config, port: config.port === undefined ? undefined : Number(config.port) });
    const result = await runSmoke(
      {
        broker: opts.broker,
        subscription,
        topicPrefix: opts.topicPrefix,
        timeoutMs: seconds * 1000,
        username: opts.username ?? (env.SMOKE_MQTT_USERNAME || undefined),
        password: env.SMOKE_MQTT_PASSWORD || undefined,
        caFile: opts.ca,
      },
      { subscriber, pubsub: service, calls, noticeMs, status },
      say,
    );
    if (result.ok) {
      progress.stop();
      io.stdout.write('smoke test passed: the message arrived unchanged with the contract attributes\n');
      summary(true);
      return 0;
    }
    fail(`smoke test FAILED:\n${result.problems.map((p) => `  - ${p}\n`).join('')}`);
    summary(false);
    return 1;
  } catch (err) {
    fail(`smoke test FAILED: ${withoutUrlPassword((err as Error).message.split('\n')[0]!, opts.broker)}\n`);
    summary(false);
    return 1;
  } finally {
    await Promise.allSettled([subscriber?.close(), pubsub.close()]);
  }
}

export function registerSmoke(program: Command): void {
  program
    .command('smoke')
    .description('after a deploy: publish a marked message through the broker and wait for it in a verification subscription')
    .requiredOption('--broker <url>', 'the deployed broker, e.g. mqtts://mqtt.example.com:8883')
    .requiredOption('--subscription <name>', 'verification subscription: projects/P/subscriptions/S, or S with --project')
    .option('--project <id>', 'project of the subscription (else GCP_PROJECT_ID)')
    .option('--topic-prefix <prefix>', 'MQTT topic prefix of smoke messages', SMOKE_TOPIC_PREFIX)
    .option('--timeout <seconds>', 'how long the whole test may take, waiting for Pub/Sub, the broker and the message', '60')
    .option('--username <name>', 'broker user name (else SMOKE_MQTT_USERNAME); the password is read from SMOKE_MQTT_PASSWORD')
    .option('--ca <file>', "PEM file of the CA of the broker's TLS certificate")
    .action(async (opts: SmokeCliOptions) => {
      endCommand(await smokeCommand(opts, process.env, process));
    });
}
