/**
 * `mqtt-ingest simulate`: a fleet of MQTT devices publishing templated JSON at a set rate, for trials and
 * capacity planning (src/simulate/). One summary line on stdout at the end (`--json`: one JSON object), a live
 * progress line on stderr when it is a terminal. Exit 0 when every device connected and every QoS > 0 publish
 * was acknowledged, 1 otherwise, 2 on bad usage (every problem listed at once).
 */
import type { Command } from 'commander';
import { runFleet } from '../simulate/fleet.js';
import { DEFAULTS, parseSimulateOptions, type SimulateCliOptions } from '../simulate/options.js';
import { summaryLine } from '../simulate/pacing.js';
import { Progress, type ProgressStream } from './progress.js';

export interface SimulateIo {
  stdout: Pick<NodeJS.WritableStream, 'write'>;
  stderr: ProgressStream;
}

export async function simulateCommand(cli: SimulateCliOptions, env: NodeJS.ProcessEnv, io: SimulateIo, signal?: AbortSignal): Promise<number> {
  const { options, problems } = parseSimulateOptions(cli, env);
  if (!options) {
    io.stderr.write(`simulate: invalid options:\n${problems.map((p) => `  - ${p}\n`).join('')}`);
    return 2;
  }
  // The live line (a terminal only) is redrawn in place; a problem line clears it first so the two never mix.
  const progress = new Progress('simulate', io.stderr);
  const summary = await runFleet(options, {
    problem: (line) => progress.line(`simulate: ${line}`),
    progress: progress.tty ? (line) => progress.update(line) : undefined,
    signal,
  });
  progress.stop();
  io.stdout.write(options.json ? `${JSON.stringify(summary)}\n` : `${summaryLine(summary)}\n`);
  return summary.ok ? 0 : 1;
}

export function registerSimulate(program: Command): void {
  program
    .command('simulate')
    .description('load generator: a fleet of MQTT devices publishing templated JSON at a set rate, for trials and capacity planning')
    .option('--url <url>', 'broker: mqtt://, mqtts://, ws:// or wss://', DEFAULTS.url)
    .option('--devices <n>', 'number of devices, each its own client sim-dev-0001 …', DEFAULTS.devices)
    .option('--rate <r>', 'messages per second per device (fractional allowed, e.g. 0.1)', DEFAULTS.rate)
    .option('--qos <0|1|2>', 'QoS of every publish', DEFAULTS.qos)
    .option('--topic <template>', 'topic template; {device} is the device name', DEFAULTS.topic)
    .option('--payload <template>', 'JSON payload template: {device}, {seq}, {ts} (epoch ms), {walk:NAME:START:STEP}', DEFAULTS.payload)
    .option('--duration <seconds>', 'publish for this long (default 10; not with --count)')
    .option('--count <n>', 'publish this many messages, all devices together (not with --duration)')
    .option('--username <name>', 'broker user name; the password is read from --password-file or MQTT_PASSWORD')
    .option('--password-file <file>', 'file whose first line is the broker password')
    .option('--ca <file>', "PEM file of the CA of the broker's TLS certificate")
    .option('--cert <file>', 'PEM client certificate (with --key)')
    .option('--key <file>', 'PEM private key of --cert')
    .option('--insecure', 'do not verify the TLS certificate of the broker')
    .option('--protocol <4|5>', 'MQTT protocol version: 4 (3.1.1) or 5', DEFAULTS.protocol)
    .option('--connect-batch <n>', 'connect this many devices at a time', DEFAULTS.connectBatch)
    .option('--json', 'print the summary as one JSON object')
    .action(async (opts: SimulateCliOptions) => {
      // Ctrl-C stops publishing; what was sent is still drained and summarised. A second Ctrl-C exits at once.
      const abort = new AbortController();
      const onSigint = () => {
        if (abort.signal.aborted) process.exit(130);
        abort.abort();
      };
      process.on('SIGINT', onSigint);
      try {
        process.exitCode = await simulateCommand(opts, process.env, process, abort.signal);
      } finally {
        process.removeListener('SIGINT', onSigint);
      }
    });
}
