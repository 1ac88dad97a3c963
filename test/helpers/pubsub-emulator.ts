import { outputTail } from './child-output.js';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PubSub, v1 } from '@google-cloud/pubsub';
import { freePort, waitFor } from './ports.js';

/**
 * The real Pub/Sub emulator from the Google Cloud CLI, for integration tests. Found through
 * `gcloud info` (never a hard-coded SDK path) and started directly, without `gcloud beta emulators`, so we
 * own its process: the launcher is a shell script that execs Java, so it runs in its own process group and
 * stop() signals the whole group.
 */

export interface PubSubEmulator {
  /** 127.0.0.1:port, as PUBSUB_EMULATOR_HOST expects it. */
  host: string;
  projectId: string;
  stop(): Promise<void>;
}

export interface Received {
  data: Buffer;
  attributes: Record<string, string>;
  messageId: string;
  /** '' when the message was published without one. */
  orderingKey: string;
}

/** Any id that follows the project-id rules works with the emulator; a short one ("p") is INVALID_ARGUMENT. */
const PROJECT_ID = 'mqtt-ingest-test';

let launcher: string | null | undefined;

/** The emulator's launcher script, or undefined when gcloud or its pubsub-emulator component is missing. */
export function pubSubEmulatorLauncher(): string | undefined {
  if (launcher === undefined) {
    launcher = null;
    try {
      const root = execFileSync('gcloud', ['info', '--format=value(installation.sdk_root)'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 30_000,
      }).trim();
      const candidate = path.join(root, 'platform', 'pubsub-emulator', 'bin', 'cloud-pubsub-emulator');
      if (root && existsSync(candidate) && hasJava()) launcher = candidate;
    } catch {
      // gcloud is not installed or failed: no emulator.
    }
  }
  return launcher ?? undefined;
}

export function hasPubSubEmulator(): boolean {
  return pubSubEmulatorLauncher() !== undefined;
}

/** The launcher runs $JAVA_HOME/bin/java or java from PATH. */
function hasJava(): boolean {
  const java = process.env.JAVA_HOME ? path.join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
  try {
    execFileSync(java, ['-version'], { stdio: 'ignore', timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

/** Starts the emulator on a free port and resolves once it answers HTTP (it serves REST and gRPC on one port). */
export async function startPubSubEmulator(): Promise<PubSubEmulator> {
  const bin = pubSubEmulatorLauncher();
  if (!bin) throw new Error('the Pub/Sub emulator is not installed (gcloud components install pubsub-emulator)');
  const port = await freePort();
  // The launcher accepts --data-dir (gcloud passes it through); this emulator version keeps its state in
  // memory and writes nothing there, but a private directory keeps any future version from sharing state.
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'pubsub-emulator-'));
  const child = spawn(bin, [`--host=127.0.0.1`, `--port=${port}`, `--data-dir=${dataDir}`], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = outputTail(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let running = true;
  void exited.then(() => {
    running = false;
  });

  const killGroup = (signal: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  };
  // A test run that dies without afterAll must not leave a JVM behind.
  const onExit = () => killGroup('SIGKILL');
  process.once('exit', onExit);

  const stop = async () => {
    process.removeListener('exit', onExit);
    if (running) {
      killGroup('SIGTERM');
      const timer = setTimeout(() => killGroup('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    await waitFor(
      async () => {
        if (!running) throw new Error(`the emulator exited during start-up:\n${output()}`);
        const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1_000) });
        return res.ok;
      },
      60_000,
      `the Pub/Sub emulator on port ${port}`,
    );
  } catch (err) {
    await stop();
    throw new Error(`${String(err)}\n--- emulator output ---\n${output()}`);
  }
  return { host: `127.0.0.1:${port}`, projectId: PROJECT_ID, stop };
}

function client(host: string, projectId: string): PubSub {
  return new PubSub({ projectId, apiEndpoint: host, emulatorMode: true });
}

/** Creates a topic and a pull subscription on it. Topic and subscription ids need 3+ characters, a letter first. */
export async function createTopicAndSubscription(
  host: string,
  projectId: string,
  topic: string,
  sub: string,
  options: { avroSchema?: object; ordered?: boolean } = {},
): Promise<void> {
  const pubsub = client(host, projectId);
  try {
    let schemaSettings: { schema: string; encoding: 'JSON' } | undefined;
    if (options.avroSchema) {
      // The emulator validates messages against a topic's schema as Pub/Sub does: a request holding one
      // message that does not parse is refused whole with INVALID_ARGUMENT.
      const schema = await pubsub.createSchema(`${topic}-schema`, 'AVRO', JSON.stringify(options.avroSchema));
      schemaSettings = { schema: await schema.getName(), encoding: 'JSON' };
    }
    const [created] = await pubsub.createTopic({ name: topic, schemaSettings });
    await created.createSubscription(sub, { ackDeadlineSeconds: 60, enableMessageOrdering: options.ordered ?? false });
  } finally {
    await pubsub.close();
  }
}

/**
 * Pulls (synchronous pull, v1 SubscriberClient) and acknowledges until `expected` messages have arrived or
 * the timeout passes, then returns what arrived. Callers compare the count with what they expected.
 */
export async function pullAll(
  host: string,
  projectId: string,
  sub: string,
  expected: number,
  timeoutMs: number,
): Promise<Received[]> {
  const pubsub = client(host, projectId);
  // getClientConfig carries the emulator's endpoint and insecure channel into the generated client.
  // (google-gax lifts grpc-js's 4 MiB receive limit itself, so 10 MB messages come through.)
  // Its ClientConfig types `port` as string | number where the generated client wants a number.
  const config = await pubsub.getClientConfig();
  const subscriber = new v1.SubscriberClient({ ...config, port: Number(config.port) });
  const subscription = `projects/${projectId}/subscriptions/${sub}`;
  const received: Received[] = [];
  const deadline = Date.now() + timeoutMs;
  try {
    while (received.length < expected && Date.now() < deadline) {
      const timeout = Math.max(500, Math.min(5_000, deadline - Date.now()));
      let messages;
      try {
        const [response] = await subscriber.pull({ subscription, maxMessages: 1000 }, { timeout });
        messages = response.receivedMessages ?? [];
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code === 4) continue; // DEADLINE_EXCEEDED: nothing this round
        // CANCELLED: the emulator resets a stream now and then under load; the library's Pull retry codes omit it.
        if (code === 1) continue;
        throw err;
      }
      if (messages.length === 0) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      for (const m of messages) {
        received.push({
          data: Buffer.from(m.message?.data ?? new Uint8Array()),
          attributes: { ...(m.message?.attributes ?? {}) },
          messageId: m.message?.messageId ?? '',
          orderingKey: m.message?.orderingKey ?? '',
        });
      }
      await subscriber.acknowledge({ subscription, ackIds: messages.map((m) => m.ackId!) });
    }
  } finally {
    await subscriber.close();
    await pubsub.close();
  }
  return received;
}
